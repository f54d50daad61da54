import { LayerUnavailableError } from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import { slotTagOf } from './index-layout'
import { scanPattern } from './key-prefix'
import type { RedisIO } from './redis-io'
import type { RedisKeyIndex } from './redis-key-index'
import { DELETE_FENCE_MS } from './redis-key-index'

/** What the recovery needs of its layer besides Redis I/O: how its values start. */
export interface NodeLossHost extends RedisIO {
  /** The first characters a value of the layer may start with (its format markers). */
  readonly valueMarkers: string
}

/** Keys unlinked per pipeline while a lost node is recovered from. */
const WIPE_BATCH = 1000

/**
 * Unlinks a key and bumps its fence counter, in one step (both live in the key's slot). The UNLINK goes
 * first: on a full Redis (noeviction) a script that has written may go on, so the INCR is not refused.
 */
export const FENCE_AND_UNLINK_SCRIPT = `local removed = redis.call('UNLINK', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return removed`

// Whether a key found by SCAN looks like a value of the layer: a string starting with one of its format
// markers (ARGV[2]). A stream, a lease token, a counter or another application's key does not.
const IS_VALUE = `
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
local head = redis.call('GETRANGE', KEYS[1], 0, 0)
if head == '' or not string.find(ARGV[2], head, 1, true) then return 0 end`
const IS_VALUE_SCRIPT = `${IS_VALUE}
return 1`
/** FENCE_AND_UNLINK_SCRIPT for a key found by SCAN, only when it is a value of the layer. */
const FENCE_AND_UNLINK_VALUE_SCRIPT = `${IS_VALUE}
${FENCE_AND_UNLINK_SCRIPT}`

/**
 * Notices a Cluster master that came back as another server (restarted, replaced, failed over) and, before
 * a group invalidation trusts the index, removes every value of the layer.
 *
 * On a Cluster the index entries, tag sets and tag epochs of a value usually live on other masters than
 * the value. A master that restarts without its data (or a replica promoted before it received the last
 * writes) loses those entries while the values they track stay on the other masters; a tag, prefix or
 * pattern invalidation would then resolve without finding them. A server's `run_id` changes on every
 * start, so the run ids of the masters are recorded in Redis (`P~{P}nodes`); one that is not recorded
 * means data may be gone, and the layer then logs a clear (loads in flight on every instance no longer
 * write back) and unlinks every value under its prefix, each with its fence counter, before recording the
 * run ids it saw. Over-invalidation on purpose: a restart that kept its data (persistence) costs a cold
 * cache, never a stale read.
 *
 * Checked before an instance's first write, and before every group invalidation and again before it
 * resolves, but only when the client lost a connection since the last check (a restarted node drops its
 * connections): otherwise it costs nothing. The first check of a namespace that existed before this
 * check did (an upgrade) finds no record and clears it once. A standalone Redis loses everything
 * together and needs none of this.
 */
export class NodeLossRecovery {
  readonly registryKey: string
  /** Lost connections (ConnectionGuard.losses) when the run ids were last confirmed; -1: never. */
  private checkedAt = -1
  private running: Promise<void> | undefined

  constructor(
    private readonly layer: NodeLossHost,
    private readonly keyIndex: RedisKeyIndex,
    private readonly losses: () => number,
  ) {
    this.registryKey = `${layer.prefix}~{${slotTagOf(layer.prefix)}}nodes`
  }

  /**
   * Before this instance's first write or load: the run ids are recorded before any value exists, so that
   * a missing record later means lost data, never a namespace no instance has used yet. Undefined (no
   * await on the write path) once done.
   */
  beforeFirstUse(): Promise<void> | undefined {
    return this.checkedAt === -1 && this.layer.isCluster ? this.confirm() : undefined
  }

  /** Resolves once the masters' run ids are confirmed (after the recovery, when one was new). */
  async confirm(): Promise<void> {
    if (!this.layer.isCluster) return
    while (this.checkedAt !== this.losses()) {
      this.running ??= this.check().finally(() => {
        this.running = undefined
      })
      await this.running
    }
  }

  private async check(): Promise<void> {
    const at = this.losses()
    const masters = (this.layer.client as Cluster).nodes('master')
    const [ids, recorded] = await Promise.all([
      Promise.all(masters.map((node) => this.runIdOf(node))),
      this.layer.command('node identities', (client) => client.smembers(this.registryKey)),
    ])
    const known = new Set(recorded)
    const unknownIn = (record: ReadonlySet<string>) => ids.some((id) => !record.has(id))
    let clear = known.size > 0 && unknownIn(known)
    // No record at all: a namespace no instance used yet, unless it holds values (an upgrade, or the
    // record's own master lost it). Read again once values were found: an instance records before its
    // first write, so values written by instances starting beside this one come with a record, and
    // must not be cleared as if they were an old namespace's.
    if (known.size === 0 && (await this.holdsValues())) {
      const now = new Set(
        await this.layer.command('node identities', (client) => client.smembers(this.registryKey)),
      )
      clear = now.size === 0 || unknownIn(now)
    }
    if (clear) await this.recover()
    if (clear || unknownIn(known)) {
      await this.layer.execPipeline(
        'node identities',
        this.layer.client
          .multi()
          .del(this.registryKey)
          .sadd(this.registryKey, ...ids),
      )
    }
    this.checkedAt = at
  }

  private async runIdOf(node: Redis): Promise<string> {
    const info = await this.layer.command('node identity', () => node.info('server'))
    const id = /^run_id:(\w+)/m.exec(info)?.[1]
    if (id === undefined) {
      throw new LayerUnavailableError(this.layer.name, `${this.layer.name}: INFO of a master names no run_id`)
    }
    return id
  }

  /** Whether any value of the layer is stored (see IS_VALUE). */
  private async holdsValues(): Promise<boolean> {
    const internal = `${this.layer.prefix}~`
    let found = false
    await this.layer.scanMasters(
      'node loss recovery',
      scanPattern(this.layer.prefix),
      WIPE_BATCH,
      async (node, keys) => {
        const pipe = node.pipeline()
        for (const key of keys) {
          if (!key.startsWith(internal))
            pipe.eval(IS_VALUE_SCRIPT, 1, key, DELETE_FENCE_MS, this.layer.valueMarkers)
        }
        if (pipe.length === 0) return undefined
        found = (await this.layer.execPipeline('node loss recovery', pipe)).some((reply) => reply === 1)
        return found ? 'stop' : undefined
      },
    )
    return found
  }

  /**
   * Logs a clear, then unlinks every value under the prefix with its fence counter bumped (a string with
   * one of the layer's format markers: not a write-behind stream or a lease that shares the prefix).
   */
  private async recover(): Promise<void> {
    await this.keyIndex.logClear()
    const internal = `${this.layer.prefix}~`
    await this.layer.scanMasters(
      'node loss recovery',
      scanPattern(this.layer.prefix),
      WIPE_BATCH,
      async (node, keys) => {
        const pipe = node.pipeline()
        for (const key of keys) {
          if (key.startsWith(internal)) continue
          pipe.eval(
            FENCE_AND_UNLINK_VALUE_SCRIPT,
            2,
            key,
            this.keyIndex.deletionKey(key),
            DELETE_FENCE_MS,
            this.layer.valueMarkers,
          )
        }
        if (pipe.length > 0) await this.layer.execPipeline('node loss recovery', pipe)
      },
    )
  }
}
