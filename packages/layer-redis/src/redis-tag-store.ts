import { InvalidOptionError } from '@layercache/core'
import type { RedisLayer } from './redis-layer'

/** Score of a member that never expires (far beyond any epoch-ms expiry, still an exact double). */
const NEVER = 8.64e15

export type TagMatchMode = 'any' | 'all'

/** Epochs of tags as read at one moment; a write is fenced when any of them moved since. */
export type TagEpochs = ReadonlyMap<string, string>

export interface TaggedWrite {
  readonly key: string
  readonly tags: readonly string[]
  /** 0 = never expires. */
  readonly expiresAt: number
  /** Epochs from the start of the load behind the write; tags missing here are snapshotted first. */
  readonly since?: TagEpochs | undefined
}

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
   * Writes tagged values: snapshots the epochs the writes do not carry (`since`, from the start of their
   * loads), records the memberships, runs `writeValues` (the layer's own SETs), then re-reads the epochs
   * and unlinks every value one of whose tags was invalidated in between. Each step is one pipeline per
   * slot owner for the whole batch. Returns the keys it had to remove.
   */
  async writeMany(items: readonly TaggedWrite[], writeValues: () => Promise<void>): Promise<string[]> {
    const missing = new Set<string>()
    for (const item of items) for (const tag of item.tags) if (!item.since?.has(tag)) missing.add(tag)
    const snapshot = missing.size > 0 ? await this.epochs([...missing]) : new Map<string, string>()
    const now = Date.now()
    const memberships = items.flatMap((item) =>
      item.tags.map((tag) => ({ item, setKey: this.tagSetKey(tag) })),
    )
    await this.layer.pipelineByKey(
      'tag memberships',
      memberships.map((m) => m.setKey),
      (pipe, setKey, i) => {
        const { item } = memberships[i]!
        const ttl = item.expiresAt === 0 ? undefined : Math.max(1, item.expiresAt - now)
        pipe.zadd(setKey, item.expiresAt === 0 ? NEVER : item.expiresAt, this.layer.prefix + item.key)
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
    await writeValues()
    const allTags = [...new Set(items.flatMap((item) => item.tags))]
    const after = await this.epochs(allTags)
    const refused = items
      .filter((item) =>
        item.tags.some((tag) => after.get(tag) !== (item.since?.get(tag) ?? snapshot.get(tag) ?? '0')),
      )
      .map((item) => item.key)
    if (refused.length > 0) {
      await this.layer.pipelineByKey(
        'tag fence',
        refused.map((key) => this.layer.prefix + key),
        (pipe, full) => pipe.unlink(full),
      )
    }
    return refused
  }

  /** One tagged write (see writeMany); returns whether the value was kept. */
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
    return (await this.writeMany([{ key, tags, expiresAt, since }], writeValue)).length === 0
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
