import { coarseNow, LayerTimeoutError } from '@layercache/core'
import { type IndexShard, NEVER, TAG_SEPARATOR } from './index-layout'
import { LuaScript } from './lua-script'
import type { RedisClock } from './redis-clock'
import type { RedisIO } from './redis-io'
import { DELETE_FENCE_MS, LOG_KEEP, type LoadFence, RedisKeyIndex } from './redis-key-index'
import { membershipCutOff, type RedisTagStore, setTtlOf, type TagEpochs } from './redis-tag-store'
import { execBySlotOwner } from './slot-pipelines'

/** What a load takes when it starts (see CacheLayer.fenceSnapshot). */
export interface RedisFence {
  /** Its tags' epochs (undefined: untagged). */
  readonly epochs: TagEpochs | undefined
  /** The group log's position and the key's fence counter. */
  readonly load: LoadFence
  /**
   * The tags the key's value was written with then (from the key index), joined as stored ('' none). Read
   * on a Cluster only: on one Redis the write script reads them itself.
   */
  readonly recorded: string
  /** The client's lost connections when the snapshot was read (see ConnectionGuard.losses). */
  readonly losses: number
}

export interface FencedItem {
  readonly key: string
  readonly full: string
  readonly ttl: number | undefined
  /** 0 = never expires. */
  readonly expiresAt: number
  readonly tags: readonly string[] | undefined
  readonly payload: string | Buffer
  /** What the load behind a write-back saw when it began; undefined for a plain set. */
  readonly fence: RedisFence | undefined
}

/** A log check that found newer entries returns them; the client matches and asks again from there. */
const LOG_ROUNDS = 4

// Every write to one Redis is one of two scripts with one body (WRITE_BODY): the key is indexed, its
// memberships recorded and the value SET, in one atomic step.
// KEYS: value, then (indexed) the shard's k, kx, kt, then each tag's set, then the key's fence counter; a
// write-back then adds the log, the tag counter and each tag's epoch.
// ARGV: payload, ttl ('' none), expiry score, indexed (1/0), tags joined ('' none), tag count, membership
// cut-off, set ttl ('' persist); a plain set then adds how long its fence counter bump lives and its
// deadline ('' none); a write-back its fence counter seen ('' none), log id seen
// ('' none), log position seen, tag invalidations seen ('' none) and each tag's epoch seen ('' for a tag
// the load could not know when it began: then the tag counter must not have moved).
// Returns {1, tags recorded before ('' none)} written; a plain set also {3} past its deadline; a
// write-back also {0} refused, or {2, log id, newest, entries} to be matched by the client.
const WRITE_BODY = `
local recorded = ''
if indexed then
  recorded = redis.call('HGET', KEYS[4], KEYS[1]) or ''
  redis.call('ZADD', KEYS[2], 0, KEYS[1])
  redis.call('ZADD', KEYS[3], ARGV[3], KEYS[1])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], KEYS[1], ARGV[5])
  elseif recorded ~= '' then redis.call('HDEL', KEYS[4], KEYS[1]) end
end
for i = 1, tags do
  local set = KEYS[sets + i]
  redis.call('ZADD', set, ARGV[3], KEYS[1])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', ARGV[7])
  if ARGV[8] == '' then redis.call('PERSIST', set)
  else
    redis.call('PEXPIRE', set, ARGV[8], 'NX')
    redis.call('PEXPIRE', set, ARGV[8], 'GT')
  end
end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return {1, recorded}`

/** Lua returning `refusal` when the server's clock is past `deadline` (ms, '' none). */
export const LATE_CHECK = (deadline: string, refusal: string) => `if ${deadline} ~= '' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(${deadline}) then return ${refusal} end
end`

const WRITE_HEAD = `
local indexed = ARGV[4] == '1'
local tags = tonumber(ARGV[6])
local sets = indexed and 4 or 1`

// A plain set (a new value): refused only when it reaches Redis after its deadline (ARGV[10], in this
// server's ms, '' none: see RedisClock), when its caller had already been told it failed. It bumps the
// key's fence counter (the last of KEYS; ARGV[9]: how long it lives), so that a load of the key that
// began before it, on any instance, does not write its older value back over this one.
const WRITE = new LuaScript(`${WRITE_HEAD}
${LATE_CHECK('ARGV[10]', '{3}')}
redis.call('INCR', KEYS[#KEYS])
redis.call('PEXPIRE', KEYS[#KEYS], ARGV[9])${WRITE_BODY}`)

// A load's write-back: refused (nothing written) if the key's fence counter moved, one of its tags'
// epochs moved, or a logged group invalidation since the load began may cover it.
const WRITE_BACK = new LuaScript(`${WRITE_HEAD}
local fence = sets + tags
if (redis.call('GET', KEYS[fence + 1]) or '') ~= ARGV[9] then return {0} end
for i = 1, tags do
  local seen = ARGV[12 + i]
  if seen == '' then
    if (redis.call('GET', KEYS[fence + 3]) or '') ~= ARGV[12] then return {0} end
  elseif (redis.call('GET', KEYS[fence + 3 + i]) or '0') ~= seen then return {0} end
end
local id = redis.call('ZRANGEBYSCORE', KEYS[fence + 2], 0, 0, 'LIMIT', 0, 1)[1]
local newest = tonumber(redis.call('ZSCORE', KEYS[fence + 2], '#') or '0')
local since = tonumber(ARGV[11])
if ARGV[10] ~= '' and id ~= ARGV[10] then return {0} end
if newest < since or newest - since > ${LOG_KEEP} then return {0} end
if newest > since then
  return {2, id or '', tostring(newest), redis.call('ZRANGEBYSCORE', KEYS[fence + 2], '(' .. since, '+inf')}
end${WRITE_BODY}`)

// After an overwrite dropped tags the key's previous value carried: takes the key (ARGV[1]) out of those
// tags' sets (KEYS[2..], ARGV[2..] their tags), except a set whose tag the key's value carries again by
// now (its recorded tags, KEYS[1]: a later write re-added the membership).
const DROP_MEMBERSHIPS = new LuaScript(`
local recorded = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local carried = {}
for tag in string.gmatch(recorded, '[^%z]+') do carried[tag] = true end
for i = 2, #KEYS do
  if not carried[ARGV[i]] then redis.call('ZREM', KEYS[i], ARGV[1]) end
end
return 1`)

// The last step of a write-back on a Cluster: SET only if the key's fence counter (same slot) is still
// the one the load saw. KEYS: value, fence counter. ARGV: counter seen ('' none), payload, ttl ('' none).
const SET_IF_UNFENCED = `
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`

/**
 * Writes to Redis: on one Redis every write (plain sets and loads' write-backs), on a Cluster loads'
 * write-backs (plain sets there go through the key index and the tag store, RedisLayer.commit). A
 * write-back is refused without writing anything when an invalidation covering the key (on any instance)
 * came after its load began: a refused value is never readable, by anyone.
 *
 * - One Redis: one script per write checks (write-backs only) and writes the value, its index entries and
 *   its tag memberships together (WRITE), a batch of writes in one pipeline: one round trip. Invalidators
 *   bump epochs or log first and look for keys after, so a write-back ordered before that bump is found
 *   and removed, and one ordered after is refused. A plain set is never refused by an invalidation (only
 *   past its deadline: see RedisClock): one that lands after an invalidation read its keys is simply
 *   newer than it. Memberships of tags an overwrite no longer
 *   carries go in a second step (DROP_MEMBERSHIPS), only when there are some: until then an invalidation
 *   of such a tag removes the new value too, which over-invalidates and never leaves a stale value.
 * - Cluster (the state lives in several slots): (1) index the key and record its memberships, (2) check
 *   the epochs and the log, (3) SET in one script with the key's fence counter, which lives in the
 *   value's slot and which every removal of the key bumps, in one script with its unlink, after the key's
 *   entries and memberships went (RedisLayer.removeKeys). An invalidator that looked for keys before (1)
 *   bumped its epoch or logged before (2), which refuses; one that looked after (1) found the key and bumps
 *   its counter, which refuses (3) or removes what (3) wrote. A removal that took (1)'s entries away
 *   bumps the counter afterwards, so (3) is refused whenever its load began before that bump.
 */
export class FencedWriter {
  constructor(
    private readonly layer: RedisIO,
    private readonly keyIndex: RedisKeyIndex,
    private readonly tagStore: RedisTagStore,
    /** The client's lost connections so far (see RedisFence.losses). */
    private readonly losses: () => number,
    private readonly clock: RedisClock,
  ) {}

  /** Returns the keys whose write was refused. On a Cluster every item must carry a fence. */
  async write(all: readonly FencedItem[]): Promise<string[]> {
    // A snapshot read before a lost connection may predate a restart that emptied Redis.
    const losses = this.losses()
    const current = (item: FencedItem) => item.fence === undefined || item.fence.losses === losses
    const stale = all.every(current) ? [] : all.filter((item) => !current(item)).map((item) => item.key)
    const items = stale.length === 0 ? all : all.filter(current)
    if (items.length === 0) return stale
    if (!this.layer.isCluster)
      return stale.length === 0
        ? this.writeOnOneRedis(items)
        : [...stale, ...(await this.writeOnOneRedis(items))]
    return [...stale, ...(await this.writeOnCluster(items))]
  }

  private async writeOnOneRedis(items: readonly FencedItem[]): Promise<string[]> {
    const known = this.keyIndex.writeShards(items.map((item) => item.full))
    const shards = known instanceof Promise ? await known : known
    const now = Date.now()
    const plain: number[] = []
    const loads: number[] = []
    items.forEach((item, i) => {
      ;(item.fence === undefined ? plain : loads).push(i)
    })
    // When the layer gives up on the plain sets' pipeline, taken before it is sent (so never later).
    const giveUpAt = coarseNow() + this.layer.timeoutOf(plain.length)
    const calls = items.map((item, i) => this.writeCall(item, shards[i], now, giveUpAt))
    const replies: WriteReply[] = new Array(items.length)
    const send = (script: LuaScript, indexes: number[]) =>
      indexes.length === 0
        ? undefined
        : script
            .runAll(
              this.layer,
              script === WRITE ? 'set' : 'write-back',
              indexes.map((i) => calls[i]!),
            )
            .then((answers) => {
              indexes.forEach((i, j) => {
                replies[i] = answers[j] as WriteReply
              })
            })
    // Sent together, in the tick the caller checked the items: one round trip for the batch.
    await Promise.all([send(WRITE, plain), send(WRITE_BACK, loads)])
    const refused: string[] = []
    const drops: Promise<unknown>[] = []
    if (plain.some((i) => replies[i]![0] === 3)) {
      // Redis judged a set late while we were still waiting for it: its clock moved since we read it.
      this.clock.moved()
      throw new LayerTimeoutError(this.layer.name, 'set', this.layer.timeoutOf(plain.length))
    }
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      let reply = replies[i]!
      // Newer group invalidations since the load began: refused if one covers the key, else asked again
      // from the newest.
      for (let round = 1; reply[0] === 2; round++) {
        if (round === LOG_ROUNDS || RedisKeyIndex.covers(reply[3], item.key)) {
          reply = [0]
          break
        }
        const args = [...calls[i]!.args]
        args[9] = reply[1]
        args[10] = reply[2]
        calls[i] = { keys: calls[i]!.keys, args }
        reply = (await WRITE_BACK.runAll(this.layer, 'write-back', [calls[i]!]))[0] as WriteReply
      }
      if (reply[0] === 0) refused.push(item.key)
      else if (reply[0] === 1 && reply[1] !== '')
        drops.push(this.dropMemberships(item, reply[1], shards[i]!.tagsKey))
    }
    if (drops.length > 0) await Promise.all(drops)
    return refused
  }

  /** The script's keys and arguments for one item (WRITE, or WRITE_BACK for a load's write-back). */
  private writeCall(
    item: FencedItem,
    shard: IndexShard | undefined,
    now: number,
    giveUpAt: number,
  ): { keys: string[]; args: (string | number | Buffer)[] } {
    const tags = item.tags ?? []
    const fence = item.fence
    const keys = [item.full]
    if (shard !== undefined) keys.push(shard.keysKey, shard.expiryKey, shard.tagsKey)
    for (const tag of tags) keys.push(this.tagStore.tagSetKey(tag))
    const args: (string | number | Buffer)[] = [
      item.payload,
      item.ttl === undefined ? '' : item.ttl,
      item.expiresAt === 0 ? NEVER : item.expiresAt,
      shard === undefined ? '0' : '1',
      tags.length === 0 ? '' : tags.join(TAG_SEPARATOR),
      tags.length,
      tags.length === 0 ? '' : membershipCutOff(now),
      tags.length === 0 ? '' : (setTtlOf(item.expiresAt, now) ?? ''),
    ]
    keys.push(this.keyIndex.deletionKey(item.full))
    if (fence === undefined) args.push(DELETE_FENCE_MS, this.clock.deadlineOf(item.full, giveUpAt) ?? '')
    else {
      keys.push(this.keyIndex.logKey, this.keyIndex.tagCounterKey)
      for (const tag of tags) keys.push(this.tagStore.epochKey(tag))
      args.push(
        fence.load.deletions ?? '',
        fence.load.log ?? '',
        fence.load.seq,
        fence.load.tagInvalidations ?? '',
      )
      for (const tag of tags) args.push(fence.epochs?.get(tag) ?? '')
    }
    return { keys, args }
  }

  /** Takes the key out of the sets of tags its previous value carried and its new one does not. */
  private async dropMemberships(item: FencedItem, recorded: string, tagsKey: string): Promise<void> {
    const carried = new Set(item.tags)
    const dropped = recorded.split(TAG_SEPARATOR).filter((tag) => !carried.has(tag))
    if (dropped.length === 0) return
    await this.layer.command('tag membership removal', (client) =>
      DROP_MEMBERSHIPS.run(
        client,
        [tagsKey, ...dropped.map((tag) => this.tagStore.tagSetKey(tag))],
        [item.full, ...dropped],
      ),
    )
  }

  private async writeOnCluster(items: readonly FencedItem[]): Promise<string[]> {
    const tagged = items.filter((item) => item.tags !== undefined && item.tags.length > 0)
    const indexed = items.map((item) => ({
      key: item.key,
      full: item.full,
      expiresAt: item.expiresAt,
      tags: item.tags,
      since: item.fence!.load,
    }))
    // (1) Entries an invalidator looking from now on finds.
    await Promise.all([
      this.keyIndex.index(indexed),
      this.tagStore.addMemberships(tagged.map((item) => ({ ...item, tags: item.tags! }))),
      this.tagStore.removeMemberships(
        this.tagStore.droppedMemberships(
          tagged.map((item) => ({ key: item.key, tags: item.tags! })),
          tagged.map((item) =>
            item.fence!.recorded === '' ? undefined : item.fence!.recorded.split(TAG_SEPARATOR),
          ),
        ),
      ),
    ])
    // (2) Invalidators that looked before (1).
    const allTags = [...new Set(tagged.flatMap((item) => item.tags!))]
    // Tags a load named only once it ran (ctx.setTags): their epochs then are unknown, so any tag
    // invalidation since the load began refuses it.
    const unknown = (item: FencedItem) => item.tags!.some((tag) => item.fence!.epochs?.get(tag) === undefined)
    const [epochs, overtaken, tagInvalidations] = await Promise.all([
      allTags.length > 0 ? this.tagStore.epochs(allTags) : undefined,
      this.keyIndex.overtaken(indexed),
      tagged.some(unknown)
        ? this.layer.command('tag invalidations', (client) => client.get(this.keyIndex.tagCounterKey))
        : undefined,
    ])
    const refused = new Set(overtaken)
    for (const item of tagged) {
      const moved = item.tags!.some((tag) => {
        const seen = item.fence!.epochs?.get(tag)
        return seen === undefined
          ? (tagInvalidations ?? null) !== (item.fence!.load.tagInvalidations ?? null)
          : epochs!.get(tag) !== seen
      })
      if (moved) refused.add(item.key)
    }
    // A node that restarted during (1) or (2) may have lost the entries or epochs they relied on.
    if (this.losses() !== items[0]!.fence!.losses) return items.map((item) => item.key)
    // (3) The SET, against the key's fence counter.
    const live = items.filter((item) => !refused.has(item.key))
    const replies = await execBySlotOwner(
      this.layer.client,
      live.map((item) => ({
        slotKey: item.full,
        add: (pipe) =>
          pipe.eval(
            SET_IF_UNFENCED,
            2,
            item.full,
            this.keyIndex.deletionKey(item.full),
            item.fence!.load.deletions ?? '',
            item.payload,
            item.ttl === undefined ? '' : item.ttl,
          ),
      })),
      (pipe) => this.layer.execPipeline('write-back', pipe),
    )
    live.forEach((item, i) => {
      if (replies[i]![0] !== 1) refused.add(item.key)
    })
    return items.filter((item) => refused.has(item.key)).map((item) => item.key)
  }
}

/**
 * WRITE's reply: {1, recorded tags} written, {0} refused, {2, log id, newest, entries} to be matched, {3}
 * past its deadline.
 */
type WriteReply = [1, string] | [0] | [2, string, string, string[]] | [3]
