import { randomBytes } from 'node:crypto'
import { indexPrefixOf, type KeyMatch, keyMatcher } from '@layercache/core'
import type { Redis } from 'ioredis'
import { escapeGlob } from './key-prefix'
import type { RedisLayer } from './redis-layer'

/** Score of a key that never expires (far beyond any epoch-ms expiry, still an exact double). */
const NEVER = 8.64e15
/** Group invalidations the log keeps; a load that spans more of them is fenced without looking. */
export const LOG_KEEP = 1000
/** Index entries are collected this long after their key expired, so writers' clock skew cannot matter. */
const GC_GRACE_MS = 60_000
const GC_BATCH = 1000
const GC_INTERVAL_MS = 1000
const SEQ_MEMBER = '#'
/** Joins a key's tags in `P~{P}kt`: no stored tag contains a NUL (control characters are refused). */
const TAG_SEPARATOR = '\u0000'
/** How long a delete's counter outlives it: loads running longer than this cannot see that delete. */
export const DELETE_FENCE_MS = 10 * 60_000

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
return seq`

// Drops index entries whose key expired more than the grace period ago, from both sets at once, so a
// writer re-adding the key in between (with a later score) is never half-removed.
const GC_SCRIPT = `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
return #dead`

// Removes keys (ARGV) from the key index and returns the tags recorded for each.
const FORGET_SCRIPT = `
local tags = redis.call('HMGET', KEYS[3], unpack(ARGV))
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('HDEL', KEYS[3], unpack(ARGV))
return tags`

/** What a load saw when it began: where the log stood, and the deletions of its own key. */
export interface LoadFence {
  /** The log's counter (0: no log yet). */
  readonly seq: number
  /** The log's id (null: no log yet). */
  readonly log: string | null
  /** The key's deletion counter (null: never deleted, or long ago). */
  readonly deletions: string | null
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

/**
 * The known-keys index of a RedisLayer and the log of prefix / pattern invalidations, which together
 * make those invalidations cost what they match rather than a SCAN of the keyspace, and keep them
 * race-safe across instances (design: docs/internals/invalidation-design.md).
 *
 * - `P~{P}k`: every key, all scores 0, ordered for ZRANGEBYLEX prefix ranges;
 *   `P~{P}kx`: the same keys scored by expiry, for garbage collection. Same hash slot (the `{P}` tag),
 *   so the collection script may touch both on a Cluster.
 * - `P~{P}kt`: the tags of each tagged key (a hash), so a delete can remove its tag memberships.
 * - `P~{P}log`: the last LOG_KEEP group invalidations, scored by a counter Redis assigns.
 *
 * - `P~d:<key>`: a counter each delete of the key bumps (expiring after DELETE_FENCE_MS).
 *
 * Writer: (1) index the key, (2) SET, (3) check the index entries are still there and, for a load's
 * write-back, that no logged invalidation and no delete of the key since the load began; else unlink.
 * Invalidator: (a) log the match, (b) read the range, (c) remove the matching index entries, (d) unlink
 * the values. If (c) removed a writer's entry before its (3), the writer unlinks its own value; if after,
 * its SET landed before (d). A load whose (3) ran before (a) had its entry indexed before (b).
 */
export class RedisKeyIndex {
  readonly keysKey: string
  readonly expiryKey: string
  readonly tagsKey: string
  readonly logKey: string
  readonly dependencyMarkKey: string
  private lastGc = 0

  /** `enabled: false` keeps only the log: invalidations then SCAN, and loads are still fenced. */
  constructor(
    private readonly layer: RedisLayer,
    readonly enabled = true,
  ) {
    const prefix = layer.prefix
    const slot = prefix === '' ? '~' : prefix
    this.keysKey = `${prefix}~{${slot}}k`
    this.expiryKey = `${prefix}~{${slot}}kx`
    this.tagsKey = `${prefix}~{${slot}}kt`
    this.logKey = `${prefix}~{${slot}}log`
    this.dependencyMarkKey = `${prefix}~{${slot}}deps`
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

  deletionKey(full: string): string {
    return `${this.layer.prefix}~d:${full.slice(this.layer.prefix.length)}`
  }

  /** What a load of `full` must remember when it starts; pass it back with the write. */
  async snapshot(full: string): Promise<LoadFence> {
    const [[seq, log], deletions] = await Promise.all([
      this.logState(),
      this.layer.command('delete counter', (client) => client.get(this.deletionKey(full))),
    ])
    return { seq, log, deletions }
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
   * Indexes `items`, runs `writeValues` (the layer's SETs) and checks each write as above. Returns the keys
   * whose value had to be removed again. On a standalone Redis the three steps share one round trip.
   */
  async writeMany(
    items: readonly IndexedWrite[],
    writeValues: (pipe?: Pipe) => Promise<void>,
  ): Promise<string[]> {
    const loads = items.filter((item) => item.since !== undefined)
    if (!this.enabled && loads.length === 0) {
      await writeValues()
      return []
    }
    if (this.enabled) this.collectInBackground()
    const oldest = loads.reduce((min, item) => Math.min(min, item.since!.seq), Number.POSITIVE_INFINITY)
    const since = loads.length > 0 ? oldest : undefined
    const deletionKeys = loads.map((item) => this.deletionKey(item.full))
    let replies: unknown[]
    let deletions: unknown[]
    if (!this.layer.isCluster) {
      const pipe = (this.layer.client as Redis).pipeline()
      this.queueIndex(pipe, items)
      await writeValues(pipe)
      const checkAt = pipe.length
      this.queueCheck(pipe, items, since)
      const deletionsAt = pipe.length
      for (const key of deletionKeys) pipe.get(key)
      const all = await this.layer.execPipeline('indexed set', pipe)
      replies = all.slice(checkAt, deletionsAt)
      deletions = all.slice(deletionsAt)
    } else {
      if (this.enabled) await this.layer.onIndexNode('key index', (pipe) => this.queueIndex(pipe, items))
      await writeValues()
      ;[replies, deletions] = await Promise.all([
        this.layer.onIndexNode('key index check', (pipe) => this.queueCheck(pipe, items, since)),
        this.layer.pipelineByKey('delete counter', deletionKeys, (pipe, key) => pipe.get(key)),
      ])
    }
    const indexed = this.enabled
      ? zip(replies.shift() as (string | null)[], replies.shift() as (string | null)[])
      : items.map(() => true)
    const overtaken =
      since === undefined
        ? new Set<string>()
        : this.overtakenBy(replies, loads, deletions as (string | null)[])
    const refused = items.filter((item, i) => !indexed[i] || overtaken.has(item.key)).map((item) => item.full)
    if (refused.length > 0) {
      await this.layer.pipelineByKey('index fence', refused, (pipe, full) => pipe.unlink(full))
    }
    const prefixLength = this.layer.prefix.length
    return refused.map((full) => full.slice(prefixLength))
  }

  /**
   * Removes every key `match` covers: logs the match, then pages through the index range, removing the
   * matching entries before unlinking their values. Returns the keys whose value was removed.
   */
  async invalidate(match: KeyMatch, pageSize = GC_BATCH): Promise<string[]> {
    // Compiled before anything is logged: a bad pattern must not reach the log other writers read.
    const test = keyMatcher(match)
    await this.append(match)
    const prefix = this.layer.prefix
    const from = prefix + indexPrefixOf(match)
    let min: string | Buffer = `[${from}`
    const max = Buffer.concat([Buffer.from(`(${from}`), Buffer.from([0xff])])
    const removed: string[] = []
    for (;;) {
      const members = await this.layer.command('key index range', (client) =>
        client.zrangebylex(this.keysKey, min, max, 'LIMIT', 0, pageSize),
      )
      const matched = members.filter((full) => test(full.slice(prefix.length)))
      if (matched.length > 0) {
        const unlinked = await this.layer.removeKeys('prefix invalidation', matched)
        matched.forEach((full, i) => {
          if (unlinked[i]) removed.push(full.slice(prefix.length))
        })
      }
      if (members.length < pageSize) return removed
      min = `(${members[members.length - 1]}`
      // Let other work run between pages of a large invalidation.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /**
   * The same removal without an index (a layer with `keyIndex: false`): SCAN over every master, filtered
   * by the same matcher. Costs a walk of the whole keyspace; still logged, so loads in flight are fenced.
   */
  async invalidateByScan(match: KeyMatch, count = GC_BATCH): Promise<string[]> {
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

  private async append(match: KeyMatch): Promise<void> {
    const entry = JSON.stringify([match.scope, match.pattern ?? null])
    const id = randomBytes(8).toString('hex')
    await this.layer.command('invalidation log', (client) =>
      client.eval(APPEND_SCRIPT, 1, this.logKey, entry, id),
    )
  }

  /** Collects index entries of keys that expired (or were evicted after expiring); returns how many. */
  async collect(now = Date.now()): Promise<number> {
    const removed = await this.layer.command('key index collection', (client) =>
      client.eval(GC_SCRIPT, 3, this.keysKey, this.expiryKey, this.tagsKey, now - GC_GRACE_MS, GC_BATCH),
    )
    return Number(removed)
  }

  /**
   * Drops the index entries of keys about to be removed and returns the tags recorded for each (so their
   * memberships can go too). Must run before the values are unlinked: a writer whose entry disappears
   * before its check unlinks its own value, and one that checked earlier wrote before the unlink.
   */
  async forget(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    if (!this.enabled || fulls.length === 0) return fulls.map(() => undefined)
    // One script per chunk: the keys travel once (not four times), the three structures change together,
    // and no command with 100k arguments holds Redis (and our timeout) for too long.
    const replies = await this.layer.onIndexNode('key index removal', (pipe) => {
      for (let i = 0; i < fulls.length; i += GC_BATCH) {
        const chunk = fulls.slice(i, i + GC_BATCH)
        pipe.eval(FORGET_SCRIPT, 3, this.keysKey, this.expiryKey, this.tagsKey, ...chunk)
      }
    })
    const tags: (readonly string[] | undefined)[] = []
    for (const reply of replies) {
      for (const joined of reply as (string | null)[]) {
        tags.push(joined === null ? undefined : joined.split(TAG_SEPARATOR))
      }
    }
    return tags
  }

  /** The tags recorded for each key (what its current value was written with), before an overwrite. */
  async recordedTags(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    if (!this.enabled || fulls.length === 0) return fulls.map(() => undefined)
    const json = await this.layer.command('key index tags', (client) => client.hmget(this.tagsKey, ...fulls))
    return json.map((text) => (text === null ? undefined : text.split(TAG_SEPARATOR)))
  }

  private collectInBackground(): void {
    const now = Date.now()
    if (now - this.lastGc < GC_INTERVAL_MS) return
    this.lastGc = now
    this.collect(now).catch(() => {
      // Collection is best effort; the next write tries again after the interval.
    })
  }

  private queueIndex(pipe: Pipe, items: readonly IndexedWrite[]): void {
    if (!this.enabled) return
    const lex: (string | number)[] = []
    const expiry: (string | number)[] = []
    const tags: string[] = []
    for (const item of items) {
      lex.push(0, item.full)
      expiry.push(item.expiresAt === 0 ? NEVER : item.expiresAt, item.full)
      if (item.tags !== undefined && item.tags.length > 0) tags.push(item.full, item.tags.join(TAG_SEPARATOR))
    }
    pipe.zadd(this.keysKey, ...lex)
    pipe.zadd(this.expiryKey, ...expiry)
    if (tags.length > 0) pipe.hset(this.tagsKey, ...tags)
  }

  private queueCheck(pipe: Pipe, items: readonly IndexedWrite[], since: number | undefined): void {
    if (this.enabled) {
      const fulls = items.map((item) => item.full)
      pipe.zmscore(this.keysKey, ...fulls)
      pipe.zmscore(this.expiryKey, ...fulls)
    }
    if (since === undefined) return
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
  private overtakenBy(
    replies: readonly unknown[],
    loads: readonly IndexedWrite[],
    deletions: readonly (string | null)[],
  ): Set<string> {
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
    loads.forEach((item, i) => {
      const since = item.since!
      const unknowable =
        (since.log !== null && since.log !== id) || newest < since.seq || newest - since.seq > LOG_KEEP
      if (
        unknowable ||
        deletions[i] !== since.deletions ||
        entries.some((entry) => entry.seq > since.seq && entry.test(item.key))
      ) {
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

/** True per key where both index sets still hold it. */
function zip(keys: readonly (string | null)[], expiries: readonly (string | null)[]): boolean[] {
  return keys.map((score, i) => score !== null && expiries[i] !== null)
}

type Pipe = ReturnType<Redis['pipeline']>
