import { InvalidOptionError, type TagMatchMode } from '@layercache/core'
import type { Redis } from 'ioredis'
import type { Pipe, RedisIO } from './redis-io'
import type { PendingRead } from './redis-key-index'
import { queueTasks } from './slot-pipelines'

/** What the tag store needs of its layer besides Redis I/O (the key index's view of keys and removal). */
export interface TagStoreHost extends RedisIO {
  /** The counter every tag invalidation bumps (RedisKeyIndex.tagCounterKey). */
  readonly tagCounterKey: string
  recordedTags(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]>
  pendingRemovals(): Promise<{ full: string; tags: readonly string[] }[]>
  /** The same read, to queue on a pipeline of one Redis after other commands (RedisKeyIndex.pendingRead). */
  pendingRead(): Promise<PendingRead>
  removeKeys(
    operation: string,
    fulls: readonly string[],
    read: ReadonlyMap<string, readonly string[]>,
  ): Promise<boolean[]>
  /** Soft invalidation of keys (RedisLayer.markStale): per key, whether it now holds a stale entry. */
  markStale(operation: string, fulls: readonly string[]): Promise<boolean[]>
}

/** Score of a member that never expires (far beyond any epoch-ms expiry, still an exact double). */
const NEVER = 8.64e15
/** Memberships are collected this long after their value expired, so writers' clock skew cannot matter. */
const GC_GRACE_MS = 60_000
/** How long a tag's epoch outlives its last invalidation (loads longer than this cannot be fenced by it). */
const EPOCH_TTL_MS = 10 * 60_000
/** Members per ZREM: one command with 100k arguments would hold Redis (and our timeout) too long. */
const MEMBERS_PER_COMMAND = 1000

/** Epochs of tags as read at one moment; a write is fenced when any of them moved since. */
export type TagEpochs = ReadonlyMap<string, string>

export interface TaggedWrite {
  readonly key: string
  readonly tags: readonly string[]
  /** 0 = never expires. */
  readonly expiresAt: number
}

/**
 * Tag memberships and tag epochs in Redis, with the ordering of docs/internals/invalidation-design.md,
 * which needs no cross-slot script and so holds on a Cluster as on one Redis:
 *
 * - writer: (0) snapshot the epochs (at the start of the load, or now), (1) add the memberships,
 *   (2) write the value, (3) read the epochs and the memberships again and unlink the value if an epoch
 *   moved since (0) or a membership is gone;
 * - invalidator: INCR the epochs, read the members (and the keys other removals have pending), then
 *   remove each with its memberships and other index entries: on one Redis in one atomic script per
 *   chunk of keys (nothing is ever half-removed), on a Cluster memberships first, then the unlink. There,
 *   a writer whose membership it removed before that writer's step 3 unlinks its own value; one whose
 *   step 3 came first wrote before the unlink. The first version removed nothing and relied on expiry
 *   alone; before that, one removed memberships *after* the unlink and left live, untracked values (the
 *   race tests caught it 155 times in 300 iterations).
 *
 * Every interleaving ends with the value gone or never written, or with a membership the next
 * invalidation finds; the only cost of a race is an over-invalidation. Deletes remove memberships the
 * same way (with the value, or before it on a Cluster); members whose value expired are collected by
 * score (their expiry, plus a grace for clock skew) on the next write of the tag, and the set expires
 * with its longest member.
 */
/** Where a RedisLayer with `prefix` keeps its tag sets: `P~t:<tag>`. */
export function tagSetPrefixOf(prefix: string): string {
  return `${prefix}~t:`
}

export class RedisTagStore {
  constructor(private readonly layer: TagStoreHost) {}

  tagSetKey(tag: string): string {
    return tagSetPrefixOf(this.layer.prefix) + tag
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
   * Plain tagged writes (set, mset): snapshots the tags' epochs and reads the tags each key was last
   * written with, records the memberships (dropping those of tags a key no longer carries), runs
   * `writeValues` (the layer's own SETs), then re-reads the epochs and the memberships and unlinks every
   * (new) value one of whose tags was invalidated in between or whose membership an invalidation or
   * delete removed meanwhile: no live value is left untracked. Each step is one pipeline per slot owner
   * for the whole batch. Returns the keys it had to remove. A load's write-back goes through FencedWriter,
   * which checks before it writes.
   */
  async writeMany(items: readonly TaggedWrite[], writeValues: () => Promise<void>): Promise<string[]> {
    const prefix = this.layer.prefix
    const missing = new Set<string>()
    for (const item of items) for (const tag of item.tags) missing.add(tag)
    const [snapshot, previous] = await Promise.all([
      missing.size > 0 ? this.epochs([...missing]) : new Map<string, string>(),
      this.layer.recordedTags(items.map((item) => prefix + item.key)),
    ])
    const now = Date.now()
    const memberships = items.flatMap((item) =>
      item.tags.map((tag) => ({ item, setKey: this.tagSetKey(tag) })),
    )
    // Memberships of tags the key carried before and does not now: removed before the new value lands, so
    // a concurrent writer still carrying that tag either re-adds after us or fails its own check.
    const dropped = this.droppedMemberships(items, previous)
    await Promise.all([this.addMemberships(items, now), this.removeMemberships(dropped)])
    await writeValues()
    const allTags = [...new Set(items.flatMap((item) => item.tags))]
    const [after, present] = await Promise.all([
      this.epochs(allTags),
      this.layer.pipelineByKey(
        'tag membership check',
        memberships.map((m) => m.setKey),
        (pipe, setKey, i) => pipe.zscore(setKey, prefix + memberships[i]!.item.key),
      ),
    ])
    const lost = new Set(memberships.filter((_, i) => present[i] === null).map((m) => m.item))
    const refused = items
      .filter(
        (item) => lost.has(item) || item.tags.some((tag) => after.get(tag) !== (snapshot.get(tag) ?? '0')),
      )
      .map((item) => item.key)
    if (refused.length > 0) {
      await this.layer.pipelineByKey(
        'tag fence',
        refused.map((key) => prefix + key),
        (pipe, full) => pipe.unlink(full),
      )
    }
    return refused
  }

  /** Per tag set, the items' keys whose value carried that tag (`previous`) and no longer does. */
  droppedMemberships(
    items: readonly { readonly key: string; readonly tags: readonly string[] }[],
    previous: readonly (readonly string[] | undefined)[],
  ): Map<string, string[]> {
    const prefix = this.layer.prefix
    const dropped = new Map<string, string[]>()
    items.forEach((item, i) => {
      for (const tag of previous[i] ?? []) {
        if (item.tags.includes(tag)) continue
        const setKey = this.tagSetKey(tag)
        const members = dropped.get(setKey)
        if (members === undefined) dropped.set(setKey, [prefix + item.key])
        else members.push(prefix + item.key)
      }
    })
    return dropped
  }

  /** Records each item's key in the sets of its tags (collecting expired members on the way). */
  async addMemberships(items: readonly TaggedWrite[], now = Date.now()): Promise<void> {
    const prefix = this.layer.prefix
    const memberships = items.flatMap((item) =>
      item.tags.map((tag) => ({ item, setKey: this.tagSetKey(tag) })),
    )
    if (memberships.length === 0) return
    await this.layer.pipelineByKey(
      'tag memberships',
      memberships.map((m) => m.setKey),
      (pipe, setKey, i) => {
        const { item } = memberships[i]!
        const ttl = setTtlOf(item.expiresAt, now)
        pipe.zadd(setKey, item.expiresAt === 0 ? NEVER : item.expiresAt, prefix + item.key)
        pipe.zremrangebyscore(setKey, '-inf', now - GC_GRACE_MS)
        // The set must outlive its longest member: set an expiry if it has none, extend it otherwise;
        // a member that never expires makes the set persistent.
        if (ttl === undefined) pipe.persist(setKey)
        else {
          pipe.pexpire(setKey, ttl, 'NX')
          pipe.pexpire(setKey, ttl, 'GT')
        }
      },
    )
  }

  /**
   * Removes memberships (tag set key → full keys): one ZREM per set and chunk of members, pipelined per
   * slot owner.
   */
  async removeMemberships(bySet: ReadonlyMap<string, Iterable<string>>): Promise<void> {
    const sets = [...bySet].map(([setKey, members]) => [setKey, [...members]] as const)
    const nonEmpty = sets.filter(([, members]) => members.length > 0)
    if (nonEmpty.length === 0) return
    await this.layer.pipelineByKey(
      'tag membership removal',
      nonEmpty.map(([setKey]) => setKey),
      (pipe, setKey, i) => {
        const members = nonEmpty[i]![1]
        for (let at = 0; at < members.length; at += MEMBERS_PER_COMMAND) {
          pipe.zrem(setKey, ...members.slice(at, at + MEMBERS_PER_COMMAND))
        }
      },
    )
  }

  /** One tagged write (see writeMany); returns whether the value was kept. */
  async write(
    key: string,
    tags: readonly string[],
    expiresAt: number,
    writeValue: () => Promise<void>,
  ): Promise<boolean> {
    if (tags.length === 0) {
      await writeValue()
      return true
    }
    return (await this.writeMany([{ key, tags, expiresAt }], writeValue)).length === 0
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
    const setKeys = tags.map((tag) => this.tagSetKey(tag))
    const { memberLists, victims } = await this.covered(tags, setKeys, mode)
    if (victims.length === 0) return []
    // Every victim leaves the sets read here with its value and every other index entry (RedisLayer
    // removeKeys): in one script per chunk on one Redis, memberships before values on a Cluster.
    const chosen = mode === 'any' ? undefined : new Set(victims)
    const read = new Map<string, string[]>(
      setKeys.map((setKey, i) => {
        const members = memberLists[i]!
        return [setKey, chosen === undefined ? members : members.filter((full) => chosen.has(full))]
      }),
    )
    const unlinked = await this.layer.removeKeys('tag invalidation', victims, read)
    // Members whose value was already gone (expired, or invalidated before) are not counted.
    const prefixLength = this.layer.prefix.length
    return victims.filter((_, i) => unlinked[i]).map((fullKey) => fullKey.slice(prefixLength))
  }

  /**
   * Soft invalidation of the values tagged with any (or all) of `tags`: the epochs move as for an
   * invalidation (loads in flight with these tags do not write back), then each member still present is
   * marked stale in place (RedisLayer.markStale), and so is each key another removal is taking out (its
   * value is there, fresh, until that removal unlinks it). Returns the keys marked.
   */
  async expire(tags: readonly string[], mode: TagMatchMode): Promise<string[]> {
    if (mode !== 'any' && mode !== 'all') {
      throw new InvalidOptionError(`Invalid tag match mode ${String(mode)}: expected 'any' or 'all'`)
    }
    if (tags.length === 0) return []
    const { victims } = await this.covered(
      tags,
      tags.map((tag) => this.tagSetKey(tag)),
      mode,
    )
    if (victims.length === 0) return []
    const marked = await this.layer.markStale('tag expiry', victims)
    const prefixLength = this.layer.prefix.length
    return victims.filter((_, i) => marked[i]).map((full) => full.slice(prefixLength))
  }

  /**
   * What an invalidation or expiry of `tags` covers, once the epochs moved (bumpAndRead): the members of
   * the sets, and the keys other removals are taking out right now that carry the tags (a key another
   * invalidation took out of these sets before they were read is still pending until its value is gone).
   */
  private async covered(
    tags: readonly string[],
    setKeys: readonly string[],
    mode: TagMatchMode,
  ): Promise<{ memberLists: string[][]; victims: string[] }> {
    const [memberLists, pendingRemovals] = await this.bumpAndRead(tags, setKeys)
    const members = mode === 'any' ? union(memberLists) : intersection(memberLists)
    const prefix = this.layer.prefix
    // Built only when there are pending removals (on one Redis, only removals in steps leave any).
    const listed = pendingRemovals.length === 0 ? undefined : new Set(members)
    const pending = pendingRemovals
      .filter(({ full, tags: carried }) => {
        if (listed!.has(full) || !full.startsWith(prefix)) return false
        return mode === 'any'
          ? tags.some((tag) => carried.includes(tag))
          : tags.every((tag) => carried.includes(tag))
      })
      .map(({ full }) => full)
    return { memberLists, victims: pending.length === 0 ? members : [...members, ...pending] }
  }

  /**
   * Bumps the tags' epochs and the counter of all tag invalidations (so write-backs in flight are refused
   * from now on), then reads the members of the tags' sets, then the keys other removals are taking out
   * right now (see RedisKeyIndex.pending): a key another invalidation took out of these sets before we read
   * them is still pending there until its value is gone. One pipeline on one Redis, whose commands run in
   * that order; on a Cluster one round trip per step.
   */
  private async bumpAndRead(
    tags: readonly string[],
    setKeys: readonly string[],
  ): Promise<[string[][], { full: string; tags: readonly string[] }[]]> {
    const counter = this.layer.tagCounterKey
    const bump = (pipe: Pipe, key: string) => {
      pipe.incr(key)
      // Bounded like everything else in Redis: a load running longer than this is fenced by the
      // epoch's disappearance, except one that began before the tag's first invalidation. The counter
      // of all tag invalidations (for loads whose tags were not known when they began) never expires.
      if (key !== counter) pipe.pexpire(key, EPOCH_TTL_MS)
    }
    const bumped = [...tags.map((tag) => this.epochKey(tag)), counter]
    if (!this.layer.isCluster) {
      const pending = await this.layer.pendingRead()
      const pipe = (this.layer.client as Redis).pipeline()
      for (const key of bumped) bump(pipe, key)
      const from = pipe.length
      for (const setKey of setKeys) pipe.zrange(setKey, 0, -1)
      const cut = queueTasks(pipe, pending.tasks)
      const replies = await this.layer.execPipeline('tag invalidation', pipe)
      return [replies.slice(from, from + setKeys.length) as string[][], pending.parse(cut(replies))]
    }
    await this.layer.pipelineByKey('tag invalidation', bumped, bump)
    const memberLists = (await this.layer.pipelineByKey('tag members', setKeys, (pipe, setKey) =>
      pipe.zrange(setKey, 0, -1),
    )) as string[][]
    return [memberLists, await this.layer.pendingRemovals()]
  }
}

/** How long a tag set must live to outlast a member expiring at `expiresAt`; undefined: for ever. */
export function setTtlOf(expiresAt: number, now: number): number | undefined {
  return expiresAt === 0 ? undefined : Math.max(1, expiresAt - now) + GC_GRACE_MS
}

/** Members whose value expired before this are collected when their set is written. */
export function membershipCutOff(now: number): number {
  return now - GC_GRACE_MS
}

function union(lists: readonly string[][]): string[] {
  // A sorted set's members are unique already: one list needs no de-duplication.
  return lists.length === 1 ? lists[0]! : [...new Set(lists.flat())]
}

function intersection(lists: readonly string[][]): string[] {
  if (lists.length === 0) return []
  const sorted = [...lists].sort((a, b) => a.length - b.length)
  const others = sorted.slice(1).map((list) => new Set(list))
  return [...new Set(sorted[0])].filter((member) => others.every((set) => set.has(member)))
}
