import { randomBytes } from 'node:crypto'
import { InvalidOptionError, indexPrefixOf, type KeyMatch, keyMatcher } from '@layercache/core'
import type { Redis } from 'ioredis'
import type { PlaceGroup } from './atomic-removal'
import { DEFAULT_KNOWN_KEYS_SHARDS, type IndexShard, NEVER, slotTagOf, TAG_SEPARATOR } from './index-layout'
import {
  FORGET_RANGE_SCRIPT,
  FORGET_SCRIPT,
  GC_SCRIPT,
  PENDING_ALL_SCRIPT,
  PENDING_SCRIPT,
  RELEASE_SCRIPT,
  shardScript,
} from './index-scripts'
import { keyFenceOf } from './key-fence'
import { escapeGlob } from './key-prefix'
import { KnownKeysLayout, type LayoutView } from './known-keys-layout'
import type { RedisIO } from './redis-io'

/** What the key index needs of its layer besides Redis I/O: removing keys with their index entries. */
export interface KeyIndexHost extends RedisIO {
  removeKeys(operation: string, fulls: readonly string[]): Promise<boolean[]>
  /** Soft invalidation of keys (RedisLayer.markStale): per key, whether it now holds a stale entry. */
  markStale(operation: string, fulls: readonly string[]): Promise<boolean[]>
}

import { execBySlotOwner, queueTasks, type SlotTask } from './slot-pipelines'
import { DEFAULT_SCAN_COUNT } from './tag-index-options'

/** Group invalidations the log keeps; a load that spans more of them is fenced without looking. */
export const LOG_KEEP = 1000
/** Index entries are collected this long after their key expired, so writers' clock skew cannot matter. */
const GC_GRACE_MS = 60_000
const GC_BATCH = 1000
/** A pending removal this old was abandoned by its remover (it crashed between its steps). */
const PENDING_GRACE_MS = 60_000
const GC_INTERVAL_MS = 1000
/** Shards collected per background collection (round-robin), so a thousand shards cost no burst. */
const GC_SHARDS_PER_TICK = 4
/**
 * A tick goes on with the shards that still had a full batch for at most this long; past it, the next
 * tick comes at once instead of after GC_INTERVAL_MS, so collection keeps up with any write rate.
 */
const GC_TICK_BUDGET_MS = 50
/** SCAN COUNT of invalidations without an index (`keyIndex: false`). */
const SCAN_COUNT = 1000
const SEQ_MEMBER = '#'
/** How long a delete's counter outlives it: loads running longer than this cannot see that delete. */
export const DELETE_FENCE_MS = 10 * 60_000
/**
 * How long the log outlives its last entry. A load that began before the log existed and is still running
 * when it expires again would miss the entries (a load that saw the log is refused when it is gone), so
 * this must exceed every fence window: it is far longer than DELETE_FENCE_MS, which already bounds the
 * loads that are fenced at all. See docs/internals/invalidation-design.md, "Keys that expire".
 */
export const LOG_TTL_MS = 24 * 60 * 60_000

// Appends one entry and trims what a fence could still need (the counter member '#' carries the newest
// score). A new log gets a random id (member '!<id>', score 0), so positions from a log that was lost
// (deleted, evicted, failed over) are never compared with the new log's counter.
const APPEND_SCRIPT = `
if not redis.call('ZRANGEBYSCORE', KEYS[1], 0, 0, 'LIMIT', 0, 1)[1] then
  redis.call('ZADD', KEYS[1], 0, '!' .. ARGV[2])
end
local seq = redis.call('ZINCRBY', KEYS[1], 1, '${SEQ_MEMBER}')
redis.call('ZADD', KEYS[1], seq, seq .. '|' .. ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 1, '(' .. (tonumber(seq) - ${LOG_KEEP - 1}))
redis.call('PEXPIRE', KEYS[1], ${LOG_TTL_MS})
return seq`

/** Callbacks run once a client ends for good: one listener per client however many layers share it. */
const endWatchers = new WeakMap<object, Set<() => void>>()

function onClientEnd(client: RedisIO['client'], callback: () => void): void {
  let callbacks = endWatchers.get(client)
  if (callbacks === undefined) {
    const created = new Set<() => void>()
    client.once('end', () => {
      endWatchers.delete(client)
      for (const run of created) run()
    })
    endWatchers.set(client, created)
    callbacks = created
  }
  callbacks.add(callback)
}

/** What a load saw when it began: where the log stood, and the deletions of its own key. */
export interface LoadFence {
  /** The log's counter (0: no log yet). */
  readonly seq: number
  /** The log's id (null: no log yet). */
  readonly log: string | null
  /** The key's deletion counter (null: never deleted, or long ago). */
  readonly deletions: string | null
  /**
   * How many tag invalidations the layer had seen (null: none yet): a write-back whose loader named tags
   * the snapshot could not know (ctx.setTags) is refused only if this moved.
   */
  readonly tagInvalidations?: string | null | undefined
}

export interface IndexedWrite {
  /** The stack's key (the layer prefix not included). */
  readonly key: string
  readonly full: string
  /** 0 = never expires. */
  readonly expiresAt: number
  /** Recorded with the key, so deleting it can find its tag memberships. */
  readonly tags?: readonly string[] | undefined
  /** What the load behind the write saw when it began; absent for a plain set. */
  readonly since?: LoadFence | undefined
}

export interface KeyIndexOptions {
  /** Where the known-keys shards and their layout live. Default: the layer's prefix. */
  readonly prefix?: string | undefined
  /** Shards of the known-keys index; the count recorded in Redis wins. Default 16. */
  readonly knownKeysShards?: number | undefined
  /** Entries read per shard and page of an index range. Default 100. */
  readonly scanCount?: number | undefined
  /**
   * The longest any value this layer writes lives (its `ttl`), which the recorded layout must outlive;
   * undefined: values may live for ever, and so does the record.
   */
  readonly maxEntryTtl?: number | undefined
}

/**
 * The known-keys index of a RedisLayer and the log of prefix / pattern invalidations, which together
 * make those invalidations cost what they match rather than a SCAN of the keyspace, and keep them
 * race-safe across instances (design: docs/internals/invalidation-design.md).
 *
 * - Known keys, in `knownKeysShards` shards (default 16) chosen by a hash of the full key, so the index
 *   spreads over a Cluster instead of growing on one node: `P~{P:<s>}k` (every key, all scores 0, for
 *   ZRANGEBYLEX prefix ranges), `P~{P:<s>}kx` (the same keys scored by expiry, for collection) and
 *   `P~{P:<s>}kt` (the tags of each tagged key, so a delete can remove its memberships). A shard's three
 *   structures share a slot, so the collection and removal scripts may touch all of them on a Cluster.
 *   `P` is the layer prefix, or a RedisTagIndex's own; `P~{P}layout` records the shard counts (see
 *   KnownKeysLayout), and the single set `P~{P}k` of earlier versions is still read until migrated.
 * - `P~{P}log`: the last LOG_KEEP group invalidations, scored by a counter Redis assigns (layer prefix);
 *   it expires LOG_TTL_MS after the last one.
 * - `P~d:<key>`: a counter each delete of the key bumps (expiring after DELETE_FENCE_MS).
 *
 * Per shard, writer: (1) index the key in its shard, (2) SET, (3) check its entries in that shard are
 * still there and, for a load's write-back, that no logged invalidation and no delete of the key came
 * since the load began; else unlink. Invalidator: (a) log the match, (b) read the range of every shard,
 * (c) remove the matching entries from every shard they may be in, (d) unlink the values. If (c) removed
 * a writer's entry before its (3), the writer unlinks its own value; if after, its SET landed before (d).
 * A load whose (3) ran before (a) had its entry indexed before (b).
 */
export class RedisKeyIndex {
  readonly logKey: string
  /** Counts tag invalidations (no expiry: it must never come back to a value a load saw). */
  readonly tagCounterKey: string
  readonly dependencyMarkKey: string
  private known: KnownKeysLayout
  private options: KeyIndexOptions
  private scanCount: number
  /** The next background collection (undefined: not started, or stopped with the client). */
  private collector: NodeJS.Timeout | undefined
  private collectorStopped = false
  /** Where background collection resumes: shards are collected a few at a time, round-robin. */
  private gcNext = 0

  /** `enabled: false` keeps only the log: invalidations then SCAN, and loads are still fenced. */
  constructor(
    private readonly layer: KeyIndexHost,
    readonly enabled = true,
    options: KeyIndexOptions = {},
  ) {
    const slot = slotTagOf(layer.prefix)
    this.logKey = `${layer.prefix}~{${slot}}log`
    this.tagCounterKey = `${layer.prefix}~{${slot}}tags`
    this.dependencyMarkKey = `${layer.prefix}~{${slot}}deps`
    this.options = options
    this.known = this.layoutFor(options)
    this.scanCount = options.scanCount ?? DEFAULT_SCAN_COUNT
  }

  /** The shard layout (recorded shard counts, legacy single set) this index follows. */
  get layout(): KnownKeysLayout {
    return this.known
  }

  /** Whether the shards are a RedisTagIndex's, which other layers (other prefixes) may share. */
  get shared(): boolean {
    return this.options.prefix !== undefined
  }

  /**
   * Moves the shards to a shared index (RedisLayer.useTagIndex). Only before the first use: entries
   * written under one layout would be missed under another.
   */
  configure(options: KeyIndexOptions): void {
    const same =
      (options.prefix ?? this.layer.prefix) === this.known.prefix &&
      (options.knownKeysShards ?? DEFAULT_KNOWN_KEYS_SHARDS) === this.known.configured &&
      (options.scanCount ?? DEFAULT_SCAN_COUNT) === this.scanCount
    if (same) return
    if (this.known.started) {
      throw new InvalidOptionError(
        `RedisLayer "${this.layer.name}": a tagIndex must be given before the layer's first operation`,
      )
    }
    this.options = { ...this.options, ...options }
    this.known = this.layoutFor(this.options)
    this.scanCount = this.options.scanCount ?? DEFAULT_SCAN_COUNT
  }

  private layoutFor(options: KeyIndexOptions): KnownKeysLayout {
    return new KnownKeysLayout(
      this.layer,
      options.prefix ?? this.layer.prefix,
      options.knownKeysShards ?? DEFAULT_KNOWN_KEYS_SHARDS,
      options.maxEntryTtl,
    )
  }

  /** The shard a new entry for `full` goes to now (tools and tests). */
  async shardOf(full: string): Promise<IndexShard> {
    return this.known.writeShard(await this.known.current(), full)
  }

  /** Every shard of every recorded layout (tools and tests). */
  async shards(): Promise<IndexShard[]> {
    return this.known.allShards(await this.known.current())
  }

  /**
   * How many keys the index holds (ZCARD of every shard; counts keys whose values already expired until
   * the background collection removes them). For the key-index size metric; 0 without the index.
   */
  async size(): Promise<number> {
    if (!this.enabled) return 0
    const shards = await this.shards()
    const counts = await Promise.all(
      shards.map((shard) => this.layer.command('key index size', (client) => client.zcard(shard.keysKey))),
    )
    return counts.reduce((sum, count) => sum + Number(count), 0)
  }

  /**
   * Set (for good) once any instance writes or loads an entry with `dependsOn`; until then invalidations
   * skip the dependency cascade, which costs two commands per removed key. A load sets it before its
   * loader runs, so an invalidation that saw it unset changed the data before that load read it.
   */
  async markDependencies(): Promise<void> {
    await this.layer.command('dependency mark', (client) => client.set(this.dependencyMarkKey, '1'))
  }

  async dependenciesMarked(): Promise<boolean> {
    return (
      (await this.layer.command('dependency mark', (client) => client.exists(this.dependencyMarkKey))) === 1
    )
  }

  /** The key's fence counter (see keyFenceOf): in the value's slot on a Cluster. */
  deletionKey(full: string): string {
    return keyFenceOf(this.layer.prefix, full, this.layer.isCluster)
  }

  /** What a load of `full` must remember when it starts; pass it back with the write. */
  async snapshot(full: string): Promise<LoadFence> {
    return (await this.snapshotWith(full, []))[0]
  }

  /**
   * The snapshot, and the values of `also` (more keys a load reads when it starts, e.g. tag epochs) read
   * with it: one pipeline on one Redis; on a Cluster, where they live on other nodes, in parallel.
   */
  async snapshotWith(full: string, also: readonly string[]): Promise<[LoadFence, (string | null)[]]> {
    const deletionKey = this.deletionKey(full)
    if (!this.layer.isCluster) {
      const replies = await this.layer.onIndexNode('fence snapshot', (pipe) => {
        this.queueLogState(pipe)
        pipe.get(this.tagCounterKey)
        pipe.get(deletionKey)
        for (const key of also) pipe.get(key)
      })
      return [this.loadFenceOf(replies, replies[3] as string | null), replies.slice(4) as (string | null)[]]
    }
    const [replies, deletions, values] = await Promise.all([
      this.layer.onIndexNode('invalidation log', (pipe) => {
        this.queueLogState(pipe)
        pipe.get(this.tagCounterKey)
      }),
      this.layer.command('delete counter', (client) => client.get(deletionKey)),
      also.length === 0
        ? []
        : (this.layer.pipelineByKey('tag epochs', also, (pipe, key) => pipe.get(key)) as Promise<
            (string | null)[]
          >),
    ])
    return [this.loadFenceOf(replies, deletions), values]
  }

  private loadFenceOf(replies: readonly unknown[], deletions: string | null): LoadFence {
    const [seq, log] = parseLogState(replies[0], replies[1])
    return { seq, log, deletions, tagInvalidations: replies[2] as string | null }
  }

  /** The log's counter and id now. */
  async logState(): Promise<[number, string | null]> {
    const replies = await this.layer.onIndexNode('invalidation log', (pipe) => this.queueLogState(pipe))
    return parseLogState(replies[0], replies[1])
  }

  /** Bumps the deletion counters of keys about to be deleted (before their values go). */
  async countDeletes(fulls: readonly string[]): Promise<void> {
    await this.layer.pipelineByKey(
      'delete counter',
      fulls.map((full) => this.deletionKey(full)),
      (pipe, key) => {
        pipe.incr(key)
        pipe.pexpire(key, DELETE_FENCE_MS)
      },
    )
  }

  /**
   * A plain write (set, mset): indexes `items`, runs `writeValues` (the layer's SETs) and checks that each
   * entry is still there; one an invalidation took out meanwhile has its (new) value unlinked again, so
   * no live value is left untracked. Returns the keys removed again. On a standalone Redis the three steps
   * share one round trip; on a Cluster each is one round trip (pipelines per node, in parallel). A load's
   * write-back goes through FencedWriter instead, which checks before it writes.
   */
  async writeMany(
    items: readonly IndexedWrite[],
    writeValues: (pipe?: Pipe) => Promise<void>,
  ): Promise<string[]> {
    if (!this.enabled) {
      await writeValues()
      return []
    }
    const current = this.known.current()
    const groups = this.groupByShard(current instanceof Promise ? await current : current, items)
    this.collectInBackground()
    const checks = groups.map((group) => this.checkTask(group))
    let checked: unknown[][]
    if (!this.layer.isCluster) {
      const pipe = (this.layer.client as Redis).pipeline()
      queueTasks(
        pipe,
        groups.map((group) => this.indexTask(group)),
      )
      await writeValues(pipe)
      const cutChecks = queueTasks(pipe, checks)
      try {
        checked = cutChecks(await this.layer.execPipeline('indexed set', pipe))
      } catch (error) {
        // An index step a full Redis refused while the SET landed would leave a value no index knows.
        await this.layer
          .pipelineByKey(
            'index fence',
            items.map((item) => item.full),
            (unlinks, full) => unlinks.unlink(full),
          )
          .catch(() => {})
        throw error
      }
    } else {
      await this.onShards(
        'key index',
        groups.map((group) => this.indexTask(group)),
      )
      await writeValues()
      checked = await this.onShards('key index check', checks)
    }
    const indexed = items.map(() => true)
    groups.forEach((group, g) => {
      const [keys, expiries] = checked[g] as [(string | null)[], (string | null)[]]
      group.at.forEach((itemIndex, j) => {
        indexed[itemIndex] = keys[j] !== null && expiries[j] !== null
      })
    })
    const refused = items.filter((_, i) => !indexed[i]).map((item) => item.full)
    if (refused.length > 0) {
      await this.layer.pipelineByKey('index fence', refused, (pipe, full) => pipe.unlink(full))
    }
    const prefixLength = this.layer.prefix.length
    return refused.map((full) => full.slice(prefixLength))
  }

  /**
   * Removes every key `match` covers: logs the match, then pages through the range of every shard (and of
   * the legacy single set) at once, removing the matching entries before unlinking their values. A page
   * reads `scanCount` entries per shard, or `batchSize` entries over all shards when given (generation
   * clean-up); either way one round trip per page, whatever the number of shards. Returns the keys whose
   * value was removed.
   */
  async invalidate(
    match: KeyMatch,
    batchSize?: number,
    how: 'remove' | 'expire' = 'remove',
  ): Promise<string[]> {
    // `expire` (soft invalidation) marks the matches stale instead and leaves every index entry as it is:
    // the keys stay. Keys other removals are taking out (pending) are marked too; their removal goes on.
    const soft = how === 'expire'
    const operation = soft ? 'prefix expiry' : 'prefix invalidation'
    // Compiled before anything is logged: a bad pattern must not reach the log other writers read.
    const test = keyMatcher(match)
    await this.append(match)
    const view = await this.known.current()
    const legacy = this.known.legacy
    // The legacy set is read whether or not it was seen: an instance of an earlier version may fill it.
    const sources = [...this.known.allShards(view), legacy]
    const perShard =
      batchSize === undefined ? this.scanCount : Math.max(1, Math.ceil(batchSize / sources.length))
    const prefix = this.layer.prefix
    const from = prefix + indexPrefixOf(match)
    const cursors: (string | Buffer)[] = sources.map(() => `[${from}`)
    const max = Buffer.concat([Buffer.from(`(${from}`), Buffer.from([0xff])])
    let active = sources.map((_, i) => i)
    const removed: string[] = []
    const seen = new Set<string>()
    for (;;) {
      const pages = await this.onShards(
        'key index range',
        active.map((i) => ({
          slotKey: sources[i]!.keysKey,
          add: (pipe) => pipe.zrangebylex(sources[i]!.keysKey, cursors[i]!, max, 'LIMIT', 0, perShard),
        })),
      )
      const matched = new Set<string>()
      const strays = new Map<IndexShard, string[]>()
      const next: number[] = []
      active.forEach((i, j) => {
        const members = pages[j]![0] as string[]
        const source = sources[i]!
        if (members.length > 0 && source === legacy) this.known.noteLegacy()
        for (const full of members) {
          if (!test(full.slice(prefix.length))) continue
          matched.add(full)
          if (!this.known.isPlaceOf(view, full, source)) {
            const list = strays.get(source)
            if (list === undefined) strays.set(source, [full])
            else list.push(full)
          }
        }
        if (members.length === perShard) {
          cursors[i] = `(${members[members.length - 1]}`
          next.push(i)
        }
      })
      // An entry where this instance would not look for it (another layout, recorded since this instance
      // last looked): removed there too, before the values go.
      if (strays.size > 0 && !soft) await this.forgetIn(strays)
      if (matched.size > 0) {
        const fulls = soft ? [...matched].filter((full) => !seen.has(full)) : [...matched]
        for (const full of fulls) seen.add(full)
        const unlinked = soft
          ? await this.layer.markStale(operation, fulls)
          : await this.layer.removeKeys(operation, fulls)
        fulls.forEach((full, i) => {
          if (unlinked[i]) removed.push(full.slice(prefix.length))
        })
      }
      if (next.length === 0) {
        // Read after every page: a key another invalidation took out of the index before this one read
        // its page is still pending there until its value is gone. An expiry marks it too: until that
        // removal unlinks it, the value is there, fresh, for any read.
        const pending = (await this.pending()).map((entry) => entry.full)
        const left = pending.filter(
          (full) => !seen.has(full) && full.startsWith(prefix) && test(full.slice(prefix.length)),
        )
        if (left.length > 0) {
          const unlinked = soft
            ? await this.layer.markStale(operation, left)
            : await this.layer.removeKeys(operation, left)
          left.forEach((full, i) => {
            if (unlinked[i]) removed.push(full.slice(prefix.length))
          })
        }
        return removed
      }
      active = next
      // Let other work run between pages of a large invalidation.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /**
   * The same removal without an index (a layer with `keyIndex: false`): SCAN over every master, filtered
   * by the same matcher. Costs a walk of the whole keyspace; still logged, so loads in flight are fenced.
   */
  async invalidateByScan(match: KeyMatch, count = SCAN_COUNT): Promise<string[]> {
    const test = keyMatcher(match)
    await this.append(match)
    const prefix = this.layer.prefix
    const pattern = `${escapeGlob(prefix + indexPrefixOf(match))}*`
    const removed: string[] = []
    await this.layer.scanMasters('prefix invalidation', pattern, count, async (node, keys) => {
      const matched = keys.filter((full) => !full.startsWith(`${prefix}~`) && test(full.slice(prefix.length)))
      if (matched.length === 0) return
      const pipe = node.pipeline()
      for (const full of matched) pipe.unlink(full)
      const replies = await this.layer.execPipeline('prefix invalidation', pipe)
      matched.forEach((full, i) => {
        if (replies[i] === 1) removed.push(full.slice(prefix.length))
      })
    })
    return removed
  }

  /** Logs an invalidation of everything (clear), so loads in flight on any instance are fenced. */
  async logClear(): Promise<void> {
    await this.append({ scope: '' })
  }

  /**
   * Before clear() unlinks everything under the layer prefix: removes this layer's entries from a shared
   * index (other layers' entries there must stay), and returns the index keys clear() must keep: the
   * recorded layout always (instances must keep agreeing on it), a shared index's shards too.
   */
  async prepareClear(): Promise<string[]> {
    if (!this.enabled) return []
    if (!this.shared) return [this.known.key]
    const view = await this.known.current()
    const shards = this.known.allShards(view)
    const kept = [
      this.known.key,
      ...shards.flatMap((shard) => [shard.keysKey, shard.expiryKey, shard.tagsKey]),
    ]
    const min = `[${this.layer.prefix}`
    const max = Buffer.concat([Buffer.from(`(${this.layer.prefix}`), Buffer.from([0xff])])
    let active = shards
    while (active.length > 0) {
      const counts = await this.onShards(
        'key index clear',
        active.map((shard) => shardScript(shard, FORGET_RANGE_SCRIPT, [min, max, GC_BATCH])),
      )
      active = active.filter((_, i) => Number(counts[i]![0]) === GC_BATCH)
    }
    return kept
  }

  private async append(match: KeyMatch): Promise<void> {
    const entry = JSON.stringify([match.scope, match.pattern ?? null])
    const id = randomBytes(8).toString('hex')
    await this.layer.command('invalidation log', (client) =>
      client.eval(APPEND_SCRIPT, 1, this.logKey, entry, id),
    )
  }

  /**
   * Collects, in every shard (and the legacy set while it exists), up to GC_BATCH index entries of keys
   * that expired (or were evicted after expiring) more than the grace period before `now`; returns how
   * many.
   */
  async collect(now = Date.now()): Promise<number> {
    return this.collectShards(this.collectable(await this.known.current()), now)
  }

  private collectable(view: LayoutView): IndexShard[] {
    const shards = this.known.allShards(view)
    if (this.known.hasLegacy) shards.push(this.known.legacy)
    return shards
  }

  private async collectShards(shards: readonly IndexShard[], now: number): Promise<number> {
    return (await this.collectEach(shards, now)).reduce((sum, count) => sum + count, 0)
  }

  /** Entries collected per shard (GC_BATCH: that shard may have more). */
  private async collectEach(shards: readonly IndexShard[], now: number): Promise<number[]> {
    const replies = await this.onShards(
      'key index collection',
      shards.map((shard) =>
        shardScript(shard, GC_SCRIPT, [now - GC_GRACE_MS, GC_BATCH, now - PENDING_GRACE_MS]),
      ),
    )
    return replies.map((reply) => Number(reply[0]))
  }

  /**
   * Drops the index entries of keys about to be removed, wherever they may be (their shard in each
   * recorded layout, the legacy set), and returns the tags recorded for each (so their memberships can go
   * too). Must run before the values are unlinked: a writer whose entry disappears before its check
   * unlinks its own value, and one that checked earlier wrote before the unlink.
   */
  async forget(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    if (!this.enabled || fulls.length === 0) return fulls.map(() => undefined)
    const view = await this.known.current()
    const tasks: SlotTask[] = []
    const owners: number[][] = []
    for (const [shard, indexes] of this.byPlace(view, fulls)) {
      // One script per chunk: the keys travel once (not four times), the three structures change together,
      // and no command with 100k arguments holds Redis (and our timeout) for too long.
      for (let at = 0; at < indexes.length; at += GC_BATCH) {
        const chunk = indexes.slice(at, at + GC_BATCH)
        owners.push(chunk)
        tasks.push(shardScript(shard, FORGET_SCRIPT, [Date.now(), ...chunk.map((i) => fulls[i]!)]))
      }
    }
    return this.mergeTags(fulls.length, owners, await this.onShards('key index removal', tasks))
  }

  /** The values of `fulls` (taken out by `forget`) are gone: they are no longer pending. */
  async release(fulls: readonly string[]): Promise<void> {
    if (!this.enabled || fulls.length === 0) return
    const view = await this.known.current()
    const tasks: SlotTask[] = []
    for (const [shard, indexes] of this.byPlace(view, fulls)) {
      for (let at = 0; at < indexes.length; at += GC_BATCH) {
        const chunk = indexes.slice(at, at + GC_BATCH).map((i) => fulls[i]!)
        tasks.push(shardScript(shard, RELEASE_SCRIPT, chunk))
      }
    }
    await this.onShards('key index release', tasks)
  }

  /**
   * Every key some invalidation (on any instance) took out of the index and has not unlinked yet, with the
   * tags recorded for it, from every shard (and the legacy set); keys of other layers sharing the index
   * included (callers filter by prefix).
   */
  async pending(): Promise<{ full: string; tags: readonly string[] }[]> {
    const read = await this.pendingRead()
    return read.parse(await this.onShards('key index pending', read.tasks))
  }

  /**
   * The read of pending(), as tasks (one per shard) to send in a pipeline after the caller's own commands,
   * and how to parse their replies. A standalone removal never leaves keys pending (AtomicRemoval); this
   * finds those of removals in steps (a Cluster's, keys whose tags writers kept changing, instances of
   * earlier versions).
   */
  async pendingRead(): Promise<PendingRead> {
    if (!this.enabled) return { tasks: [], parse: () => [] }
    const shards = this.collectable(await this.known.current())
    // One Redis: one script for every shard (an invalidation of one key should not cost 16 scripts).
    const tasks: SlotTask[] = this.layer.isCluster
      ? shards.map((shard) => shardScript(shard, PENDING_SCRIPT, []))
      : [
          {
            slotKey: shards[0]!.keysKey,
            add: (pipe) =>
              pipe.eval(
                PENDING_ALL_SCRIPT,
                shards.length * 2,
                ...shards.flatMap((shard) => [shard.pendingKey, shard.tagsKey]),
              ),
          },
        ]
    return {
      tasks,
      parse: (replies) =>
        replies.flatMap((reply) => {
          const [keys, tags] = reply[0] as [string[], (string | null)[]]
          return keys.map((full, i) => ({ full, tags: tags[i] ? tags[i]!.split(TAG_SEPARATOR) : [] }))
        }),
    }
  }

  private async forgetIn(byShard: ReadonlyMap<IndexShard, readonly string[]>): Promise<void> {
    const tasks: SlotTask[] = []
    for (const [shard, fulls] of byShard) {
      for (let at = 0; at < fulls.length; at += GC_BATCH) {
        tasks.push(shardScript(shard, FORGET_SCRIPT, [Date.now(), ...fulls.slice(at, at + GC_BATCH)]))
      }
    }
    await this.onShards('key index removal', tasks)
  }

  /** The tags recorded for each key (what its current value was written with), before an overwrite. */
  async recordedTags(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    if (!this.enabled || fulls.length === 0) return fulls.map(() => undefined)
    const view = await this.known.current()
    const tasks: SlotTask[] = []
    const owners: number[][] = []
    for (const [shard, indexes] of this.byPlace(view, fulls)) {
      owners.push(indexes)
      tasks.push({
        slotKey: shard.tagsKey,
        add: (pipe) => pipe.hmget(shard.tagsKey, ...indexes.map((i) => fulls[i]!)),
      })
    }
    return this.mergeTags(fulls.length, owners, await this.onShards('key index tags', tasks))
  }

  /**
   * `at` (indexes into `fulls`) grouped by the list of shards each key's entries may be in: its shard,
   * plus its shards in draining layouts and the legacy set while those exist (AtomicRemoval). Without an
   * index, one group with no places.
   */
  async groupByPlaces(fulls: readonly string[], at: readonly number[]): Promise<PlaceGroup[]> {
    if (!this.enabled) return [{ places: [], keys: [...at] }]
    const current = this.known.current()
    const view = current instanceof Promise ? await current : current
    const groups = new Map<IndexShard | string, PlaceGroup>()
    // The usual case, one place per key, grouped by the shard object without a list per key.
    const single = view.draining.length === 0 && !this.known.hasLegacy
    for (const i of at) {
      const full = fulls[i]!
      let places: IndexShard[] | undefined
      let id: IndexShard | string
      if (single) id = this.known.writeShard(view, full)
      else {
        places = this.known.placesOf(view, full)
        id = places.map((shard) => shard.keysKey).join('\n')
      }
      const group = groups.get(id)
      if (group !== undefined) group.keys.push(i)
      else groups.set(id, { places: places ?? [id as IndexShard], keys: [i] })
    }
    return [...groups.values()]
  }

  /** Key indexes grouped by every shard their entries may be in. */
  private byPlace(view: LayoutView, fulls: readonly string[]): Map<IndexShard, number[]> {
    const groups = new Map<IndexShard, number[]>()
    const add = (shard: IndexShard, i: number) => {
      const list = groups.get(shard)
      if (list === undefined) groups.set(shard, [i])
      else list.push(i)
    }
    // The usual case, one place per key, without a list per key.
    const single = view.draining.length === 0 && !this.known.hasLegacy
    fulls.forEach((full, i) => {
      if (single) add(this.known.writeShard(view, full), i)
      else for (const shard of this.known.placesOf(view, full)) add(shard, i)
    })
    return groups
  }

  /** Per key, the union of the tags recorded wherever it was found (`owners`: the keys of each reply). */
  private mergeTags(
    count: number,
    owners: readonly (readonly number[])[],
    replies: readonly unknown[][],
  ): (readonly string[] | undefined)[] {
    const tags: (string[] | undefined)[] = new Array(count).fill(undefined)
    owners.forEach((indexes, r) => {
      const joined = replies[r]![0] as (string | null)[]
      indexes.forEach((keyIndex, j) => {
        const text = joined[j]
        if (text === null || text === undefined) return
        const found = text.split(TAG_SEPARATOR)
        const known = tags[keyIndex]
        if (known === undefined) tags[keyIndex] = found
        else for (const tag of found) if (!known.includes(tag)) known.push(tag)
      })
    })
    return tags
  }

  /**
   * Starts background collection on the layer's first write: from then on it runs every GC_INTERVAL_MS
   * whether or not the instance still writes (an idle fleet collects too), a few shards per tick,
   * going on with every shard that still had a full batch and ticking again at once when it fell
   * behind. Stops when the client is closed for good.
   */
  private collectInBackground(): void {
    if (this.collector !== undefined || this.collectorStopped || !this.enabled) return
    onClientEnd(this.layer.client, () => this.stopCollecting())
    this.scheduleCollection(GC_INTERVAL_MS)
  }

  private scheduleCollection(delay: number): void {
    if (this.collectorStopped) return
    this.collector = setTimeout(() => {
      this.collectRound().then(
        ({ behind }) => this.scheduleCollection(behind ? 0 : GC_INTERVAL_MS),
        // Best effort: the next tick tries again.
        () => this.scheduleCollection(GC_INTERVAL_MS),
      )
    }, delay)
    this.collector.unref()
  }

  private stopCollecting(): void {
    this.collectorStopped = true
    clearTimeout(this.collector)
  }

  /**
   * One background tick: the next few shards, again and again while one still had a full batch, for at
   * most GC_TICK_BUDGET_MS (`behind`: it stopped with work left). Returns how many entries went.
   */
  async collectRound(now = Date.now()): Promise<{ collected: number; behind: boolean }> {
    const current = this.known.current()
    const shards = this.collectable(current instanceof Promise ? await current : current)
    const from = this.gcNext % shards.length
    let batch = shards.slice(from, from + GC_SHARDS_PER_TICK)
    this.gcNext = from + batch.length
    const until = performance.now() + GC_TICK_BUDGET_MS
    let collected = 0
    while (batch.length > 0) {
      const counts = await this.collectEach(batch, now)
      collected += counts.reduce((sum, count) => sum + count, 0)
      batch = batch.filter((_, i) => counts[i] === GC_BATCH)
      if (batch.length > 0 && performance.now() > until) return { collected, behind: true }
    }
    return { collected, behind: false }
  }

  /**
   * The shard, per item, where its entry goes now (undefined without an index); starts a background
   * collection when one is due.
   */
  writeShards(fulls: readonly string[]): (IndexShard | undefined)[] | Promise<(IndexShard | undefined)[]> {
    if (!this.enabled) return fulls.map(() => undefined)
    const current = this.known.current()
    this.collectInBackground()
    // Without waiting once the layout is known, so the writes leave in the tick their caller checked them.
    if (current instanceof Promise)
      return current.then((view) => fulls.map((full) => this.known.writeShard(view, full)))
    return fulls.map((full) => this.known.writeShard(current, full))
  }

  /** Indexes `items` (one pipeline per slot owner); what a Cluster write-back does before its checks. */
  async index(items: readonly IndexedWrite[]): Promise<void> {
    if (!this.enabled || items.length === 0) return
    const current = this.known.current()
    const groups = this.groupByShard(current instanceof Promise ? await current : current, items)
    this.collectInBackground()
    await this.onShards(
      'key index',
      groups.map((group) => this.indexTask(group)),
    )
  }

  /**
   * The keys of `loads` a logged invalidation overtook since their fences were taken (one round trip to
   * the log's node).
   */
  async overtaken(loads: readonly IndexedWrite[]): Promise<Set<string>> {
    if (loads.length === 0) return new Set()
    const since = loads.reduce((min, item) => Math.min(min, item.since!.seq), Number.POSITIVE_INFINITY)
    const replies = await this.layer.onIndexNode('invalidation log check', (pipe) =>
      this.queueLogCheck(pipe, since),
    )
    return this.overtakenBy(replies, loads)
  }

  /** Log entries (as stored: `seq|[scope, pattern]`) that cover `key`. */
  static covers(members: readonly string[], key: string): boolean {
    for (const member of members) {
      if (member === SEQ_MEMBER || member.startsWith('!')) continue
      const [scope, pattern] = JSON.parse(member.slice(member.indexOf('|') + 1)) as [string, string | null]
      if (keyMatcher({ scope, pattern: pattern ?? undefined })(key)) return true
    }
    return false
  }

  private groupByShard(view: LayoutView, items: readonly IndexedWrite[]): ShardWrites[] {
    const groups = new Map<IndexShard, ShardWrites>()
    items.forEach((item, i) => {
      const shard = this.known.writeShard(view, item.full)
      const group = groups.get(shard)
      if (group === undefined) groups.set(shard, { shard, items: [item], at: [i] })
      else {
        group.items.push(item)
        group.at.push(i)
      }
    })
    return [...groups.values()]
  }

  private indexTask({ shard, items }: ShardWrites): SlotTask {
    return {
      slotKey: shard.keysKey,
      add: (pipe) => {
        const lex: (string | number)[] = []
        const expiry: (string | number)[] = []
        const tags: string[] = []
        for (const item of items) {
          lex.push(0, item.full)
          expiry.push(item.expiresAt === 0 ? NEVER : item.expiresAt, item.full)
          if (item.tags !== undefined && item.tags.length > 0) {
            tags.push(item.full, item.tags.join(TAG_SEPARATOR))
          }
        }
        pipe.zadd(shard.keysKey, ...lex)
        pipe.zadd(shard.expiryKey, ...expiry)
        if (tags.length > 0) pipe.hset(shard.tagsKey, ...tags)
      },
    }
  }

  private checkTask({ shard, items }: ShardWrites): SlotTask {
    const fulls = items.map((item) => item.full)
    return {
      slotKey: shard.keysKey,
      add: (pipe) => {
        pipe.zmscore(shard.keysKey, ...fulls)
        pipe.zmscore(shard.expiryKey, ...fulls)
      },
    }
  }

  private onShards(operation: string, tasks: readonly SlotTask[]): Promise<unknown[][]> {
    return execBySlotOwner(this.layer.client, tasks, (pipe) => this.layer.execPipeline(operation, pipe))
  }

  private queueLogCheck(pipe: Pipe, since: number): void {
    pipe.zrangebyscore(this.logKey, `(${since}`, '+inf', 'WITHSCORES')
    this.queueLogState(pipe)
  }

  private queueLogState(pipe: Pipe): void {
    pipe.zscore(this.logKey, SEQ_MEMBER)
    pipe.zrangebyscore(this.logKey, 0, 0, 'LIMIT', 0, 1)
  }

  /**
   * The loads' keys that an invalidation overtook: `replies` holds the log entries newer than the oldest
   * load's position, then the log's counter and id; `deletions` each load's delete counter now. A log
   * with another id (it was lost and started again), a counter behind a load's position, or entries
   * trimmed away fence the load without looking.
   */
  private overtakenBy(replies: readonly unknown[], loads: readonly IndexedWrite[]): Set<string> {
    const log = replies[0] as string[]
    const [newest, id] = parseLogState(replies[1], replies[2])
    const entries: { seq: number; test: (key: string) => boolean }[] = []
    for (let i = 0; i < log.length; i += 2) {
      const member = log[i]!
      if (member === SEQ_MEMBER) continue
      const [scope, pattern] = JSON.parse(member.slice(member.indexOf('|') + 1)) as [string, string | null]
      entries.push({ seq: Number(log[i + 1]), test: keyMatcher({ scope, pattern: pattern ?? undefined }) })
    }
    const overtaken = new Set<string>()
    loads.forEach((item) => {
      const since = item.since!
      const unknowable =
        (since.log !== null && since.log !== id) || newest < since.seq || newest - since.seq > LOG_KEEP
      if (unknowable || entries.some((entry) => entry.seq > since.seq && entry.test(item.key))) {
        overtaken.add(item.key)
      }
    })
    return overtaken
  }
}

function parseLogState(counter: unknown, idMember: unknown): [number, string | null] {
  const first = (idMember as string[])[0]
  return [counter === null ? 0 : Number(counter), first === undefined ? null : first]
}

/** A read of the pending removals to send with other commands (RedisKeyIndex.pendingRead). */
export interface PendingRead {
  readonly tasks: readonly SlotTask[]
  /** The tasks' own replies (as cut by queueTasks or returned by execBySlotOwner) → the pending keys. */
  parse(replies: readonly unknown[][]): { full: string; tags: readonly string[] }[]
}

/** Writes of one batch that go to one shard; `at`: their positions in the batch. */
interface ShardWrites {
  readonly shard: IndexShard
  readonly items: IndexedWrite[]
  readonly at: number[]
}

type Pipe = ReturnType<Redis['pipeline']>
