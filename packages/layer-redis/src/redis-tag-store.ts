import { InvalidOptionError } from '@layercache/core'
import type { RedisLayer } from './redis-layer'

/** Score of a member that never expires (far beyond any epoch-ms expiry, still an exact double). */
const NEVER = 8.64e15

export type TagMatchMode = 'any' | 'all'

/** Epochs of tags as read at one moment; a write is fenced when any of them moved since. */
export type TagEpochs = ReadonlyMap<string, string>

/**
 * Tag memberships and tag epochs in Redis, with the ordering of docs/internals/invalidation-design.md,
 * which needs no cross-slot script and so holds on a Cluster as on one Redis:
 *
 * - writer: (0) snapshot the epochs (at the start of the load, or now), (1) add the memberships,
 *   (2) write the value, (3) read the epochs again and unlink the value if any moved since (0);
 * - invalidator: INCR the epochs, read the members, unlink them. It never removes a membership: one it
 *   read may belong to a write that lands after its unlink (the race tests found exactly that), and a
 *   removed membership would leave that value live but untracked.
 *
 * Every interleaving ends with the value gone or never written, or with a membership the next
 * invalidation finds; the only cost of a race is an over-invalidation. Memberships are collected by
 * score instead: each write scores its membership with its expiry, and members whose latest value
 * expired are dropped on the next write of the tag; the set itself expires with its longest member.
 */
export class RedisTagStore {
  constructor(private readonly layer: RedisLayer) {}

  tagSetKey(tag: string): string {
    return `${this.layer.prefix}~t:${tag}`
  }

  epochKey(tag: string): string {
    return `${this.layer.prefix}~te:${tag}`
  }

  /** Reads the current epochs of `tags`: take it when a load starts, pass it to `write` when it ends. */
  async epochs(tags: readonly string[]): Promise<TagEpochs> {
    const replies = await this.layer.pipelineByKey(
      'tag epochs',
      tags.map((tag) => this.epochKey(tag)),
      (pipe, key) => pipe.get(key),
    )
    return new Map(tags.map((tag, i) => [tag, (replies[i] as string | null) ?? '0']))
  }

  /**
   * Writes a tagged value: records the memberships, runs `writeValue` (the layer's own SET), then checks
   * the epochs against `since` (or against a snapshot taken before anything else) and removes the value
   * when an invalidation of one of its tags got in between. Returns whether the value was kept.
   */
  async write(
    key: string,
    tags: readonly string[],
    expiresAt: number,
    writeValue: () => Promise<void>,
    since?: TagEpochs,
  ): Promise<boolean> {
    if (tags.length === 0) {
      await writeValue()
      return true
    }
    // Tags the loader added after the snapshot (ctx.setTags) are snapshotted now, before anything else.
    const missing = since === undefined ? tags : tags.filter((tag) => !since.has(tag))
    const before = new Map(since ?? [])
    if (missing.length > 0) for (const [tag, epoch] of await this.epochs(missing)) before.set(tag, epoch)
    const fullKey = this.layer.prefix + key
    const now = Date.now()
    const ttl = expiresAt === 0 ? undefined : Math.max(1, expiresAt - now)
    const score = expiresAt === 0 ? NEVER : expiresAt
    await this.layer.pipelineByKey(
      'tag memberships',
      tags.map((tag) => this.tagSetKey(tag)),
      (pipe, setKey) => {
        pipe.zadd(setKey, score, fullKey)
        pipe.zremrangebyscore(setKey, '-inf', now)
        // The set must outlive its longest member: set an expiry if it has none, extend it otherwise;
        // a member that never expires makes the set persistent.
        if (ttl === undefined) pipe.persist(setKey)
        else {
          pipe.pexpire(setKey, ttl, 'NX')
          pipe.pexpire(setKey, ttl, 'GT')
        }
      },
    )
    await writeValue()
    const after = await this.epochs(tags)
    for (const tag of tags) {
      if (after.get(tag) !== (before.get(tag) ?? '0')) {
        await this.layer.pipelineByKey('tag fence', [fullKey], (pipe, k) => pipe.unlink(k))
        return false
      }
    }
    return true
  }

  /**
   * Invalidates every key tagged with any (or all) of `tags`: bumps their epochs first, so writes in flight
   * fence themselves, then unlinks the members. Returns the keys whose value was removed (without the
   * layer prefix).
   */
  async invalidate(tags: readonly string[], mode: TagMatchMode): Promise<string[]> {
    if (mode !== 'any' && mode !== 'all') {
      throw new InvalidOptionError(`Invalid tag match mode ${String(mode)}: expected 'any' or 'all'`)
    }
    if (tags.length === 0) return []
    await this.layer.pipelineByKey(
      'tag invalidation',
      tags.map((tag) => this.epochKey(tag)),
      (pipe, key) => pipe.incr(key),
    )
    const setKeys = tags.map((tag) => this.tagSetKey(tag))
    const memberLists = (await this.layer.pipelineByKey('tag members', setKeys, (pipe, setKey) =>
      pipe.zrange(setKey, 0, -1),
    )) as string[][]
    const victims = mode === 'any' ? union(memberLists) : intersection(memberLists)
    if (victims.length === 0) return []
    const unlinked = await this.layer.pipelineByKey('tag invalidation', victims, (pipe, k) => pipe.unlink(k))
    // Members whose value was already gone (expired, or invalidated before) are not counted.
    const prefixLength = this.layer.prefix.length
    return victims.filter((_, i) => unlinked[i] === 1).map((fullKey) => fullKey.slice(prefixLength))
  }
}

function union(lists: readonly string[][]): string[] {
  return [...new Set(lists.flat())]
}

function intersection(lists: readonly string[][]): string[] {
  if (lists.length === 0) return []
  const sorted = [...lists].sort((a, b) => a.length - b.length)
  const others = sorted.slice(1).map((list) => new Set(list))
  return [...new Set(sorted[0])].filter((member) => others.every((set) => set.has(member)))
}
