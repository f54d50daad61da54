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

// Appends one entry and trims what a fence could still need (the counter member '#' carries the newest score).
const APPEND_SCRIPT = `
local seq = redis.call('ZINCRBY', KEYS[1], 1, '${SEQ_MEMBER}')
redis.call('ZADD', KEYS[1], seq, seq .. '|' .. ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(seq) - ${LOG_KEEP - 1}))
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

/** Where the log stood when a load began. */
export type LogPosition = number

export interface IndexedWrite {
  /** The stack's key (the layer prefix not included). */
  readonly key: string
  readonly full: string
  /** 0 = never expires. */
  readonly expiresAt: number
  /** Recorded with the key, so deleting it can find its tag memberships. */
  readonly tags?: readonly string[] | undefined
  /** Log position at the start of the load behind the write; absent for a plain set. */
  readonly since?: LogPosition | undefined
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
 * Writer: (1) index the key, (2) SET, (3) check the index entry is still there and, for a load's
 * write-back, that no logged invalidation since the load began covers the key; otherwise unlink.
 * Invalidator: (a) log the match, (b) read the range, (c) remove the matching index entries, (d) unlink
 * the values. If (c) removed a writer's entry before its (3), the writer unlinks its own value; if after,
 * its SET landed before (d). A load whose (3) ran before (a) had its entry indexed before (b).
 */
export class RedisKeyIndex {
  readonly keysKey: string
  readonly expiryKey: string
  readonly tagsKey: string
  readonly logKey: string
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
  }

  /** The log position now: take it when a load starts, pass it back with the write. */
  async position(): Promise<LogPosition> {
    const score = await this.layer.command('invalidation log', (client) =>
      client.zscore(this.logKey, SEQ_MEMBER),
    )
    return score === null ? 0 : Number(score)
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
    const oldest = loads.reduce((min, item) => Math.min(min, item.since!), Number.POSITIVE_INFINITY)
    const since = loads.length > 0 ? oldest : undefined
    let replies: unknown[]
    if (!this.layer.isCluster) {
      const pipe = (this.layer.client as Redis).pipeline()
      this.queueIndex(pipe, items)
      await writeValues(pipe)
      const checkAt = pipe.length
      this.queueCheck(pipe, items, since)
      replies = (await this.layer.execPipeline('indexed set', pipe)).slice(checkAt)
    } else {
      if (this.enabled) await this.layer.onIndexNode('key index', (pipe) => this.queueIndex(pipe, items))
      await writeValues()
      replies = await this.layer.onIndexNode('key index check', (pipe) => this.queueCheck(pipe, items, since))
    }
    const scores = this.enabled ? (replies.shift() as (string | null)[]) : items.map(() => '')
    const overtaken =
      since === undefined
        ? new Set<string>()
        : this.overtakenBy(replies[0] as string[], replies[1] as string | null, loads)
    const refused = items
      .filter((item, i) => scores[i] === null || overtaken.has(item.key))
      .map((item) => item.full)
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
    await this.layer.command('invalidation log', (client) =>
      client.eval(APPEND_SCRIPT, 1, this.logKey, JSON.stringify([match.scope, match.pattern ?? null])),
    )
    const prefix = this.layer.prefix
    const test = keyMatcher(match)
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
    await this.layer.command('invalidation log', (client) =>
      client.eval(APPEND_SCRIPT, 1, this.logKey, JSON.stringify([match.scope, match.pattern ?? null])),
    )
    const prefix = this.layer.prefix
    const test = keyMatcher(match)
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
    await this.layer.command('invalidation log', (client) =>
      client.eval(APPEND_SCRIPT, 1, this.logKey, JSON.stringify(['', null])),
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
    const replies = await this.layer.onIndexNode('key index removal', (pipe) => {
      pipe.hmget(this.tagsKey, ...fulls)
      pipe.zrem(this.keysKey, ...fulls)
      pipe.zrem(this.expiryKey, ...fulls)
      pipe.hdel(this.tagsKey, ...fulls)
    })
    return (replies[0] as (string | null)[]).map((json) =>
      json === null ? undefined : (JSON.parse(json) as string[]),
    )
  }

  /** The tags recorded for each key (what its current value was written with), before an overwrite. */
  async recordedTags(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    if (!this.enabled || fulls.length === 0) return fulls.map(() => undefined)
    const json = await this.layer.command('key index tags', (client) => client.hmget(this.tagsKey, ...fulls))
    return json.map((text) => (text === null ? undefined : (JSON.parse(text) as string[])))
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
      if (item.tags !== undefined && item.tags.length > 0) tags.push(item.full, JSON.stringify(item.tags))
    }
    pipe.zadd(this.keysKey, ...lex)
    pipe.zadd(this.expiryKey, ...expiry)
    if (tags.length > 0) pipe.hset(this.tagsKey, ...tags)
  }

  private queueCheck(pipe: Pipe, items: readonly IndexedWrite[], since: LogPosition | undefined): void {
    if (this.enabled) pipe.zmscore(this.expiryKey, ...items.map((item) => item.full))
    if (since === undefined) return
    pipe.zrangebyscore(this.logKey, `(${since}`, '+inf', 'WITHSCORES')
    pipe.zscore(this.logKey, SEQ_MEMBER)
  }

  /**
   * The loads' keys that a logged invalidation overtook: `log` holds the entries newer than the oldest
   * load's position, `counter` the newest position. A counter behind a load's position (the log was
   * deleted) or entries trimmed away fence the load without looking.
   */
  private overtakenBy(log: readonly string[], counter: string | null, loads: readonly IndexedWrite[]) {
    const newest = counter === null ? 0 : Number(counter)
    const entries: { seq: number; test: (key: string) => boolean }[] = []
    for (let i = 0; i < log.length; i += 2) {
      const member = log[i]!
      if (member === SEQ_MEMBER) continue
      const [scope, pattern] = JSON.parse(member.slice(member.indexOf('|') + 1)) as [string, string | null]
      entries.push({ seq: Number(log[i + 1]), test: keyMatcher({ scope, pattern: pattern ?? undefined }) })
    }
    const overtaken = new Set<string>()
    for (const item of loads) {
      const since = item.since!
      const unknowable = newest < since || newest - since > LOG_KEEP
      if (unknowable || entries.some((entry) => entry.seq > since && entry.test(item.key))) {
        overtaken.add(item.key)
      }
    }
    return overtaken
  }
}

type Pipe = ReturnType<Redis['pipeline']>
