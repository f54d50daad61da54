import { NEVER, TAG_SEPARATOR } from './index-layout'
import { LuaScript } from './lua-script'
import type { RedisIO } from './redis-io'
import { LOG_KEEP, type LoadFence, RedisKeyIndex } from './redis-key-index'
import { membershipCutOff, type RedisTagStore, setTtlOf, type TagEpochs } from './redis-tag-store'
import { execBySlotOwner } from './slot-pipelines'

/** What a load takes when it starts (see CacheLayer.fenceSnapshot). */
export interface RedisFence {
  /** Its tags' epochs (undefined: untagged). */
  readonly epochs: TagEpochs | undefined
  /** The group log's position and the key's fence counter. */
  readonly load: LoadFence
  /** The tags the key's value was written with then (from the key index), joined as stored ('' none). */
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
  readonly fence: RedisFence
}

/** A log check that found newer entries returns them; the client matches and asks again from there. */
const LOG_ROUNDS = 4

// A load's write-back on one Redis, in one atomic step: refused (nothing written) if the key's fence
// counter moved, one of its tags' epochs moved, or a logged group invalidation since the load began may
// cover it; else the key is indexed, its memberships recorded and the value SET.
// KEYS: value, fence counter, log, then (indexed) the shard's k, kx, kt, then per tag its set and epoch,
// then the sets of tags the key no longer carries.
// ARGV: payload, ttl ('' none), expiry score, fence counter seen ('' none), log id seen ('' none), log
// position seen, indexed (1/0), tags joined ('' none), recorded tags seen, membership cut-off, set ttl
// ('' persist), tag count, dropped count, then each tag's epoch seen ('' for a tag the load could not
// know when it began: then the counter of all tag invalidations, the last KEYS and ARGV, must not have
// moved).
// Returns {1} written, {0} refused, {2, log id, newest, entries} to be matched by the client.
const WRITE_BACK = new LuaScript(`
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[4] then return {0} end
local indexed = ARGV[7] == '1'
local base = indexed and 6 or 3
local tags = tonumber(ARGV[12])
local dropped = tonumber(ARGV[13])
for i = 1, tags do
  local seen = ARGV[13 + i]
  if seen == '' then
    if (redis.call('GET', KEYS[#KEYS]) or '') ~= ARGV[#ARGV] then return {0} end
  elseif (redis.call('GET', KEYS[base + 2 * i]) or '0') ~= seen then return {0} end
end
local id = redis.call('ZRANGEBYSCORE', KEYS[3], 0, 0, 'LIMIT', 0, 1)[1]
local newest = tonumber(redis.call('ZSCORE', KEYS[3], '#') or '0')
local since = tonumber(ARGV[6])
if ARGV[5] ~= '' and id ~= ARGV[5] then return {0} end
if newest < since or newest - since > ${LOG_KEEP} then return {0} end
if newest > since then
  return {2, id or '', tostring(newest), redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf')}
end
if indexed then
  local recorded = redis.call('HGET', KEYS[6], KEYS[1]) or ''
  redis.call('ZADD', KEYS[4], 0, KEYS[1])
  redis.call('ZADD', KEYS[5], ARGV[3], KEYS[1])
  if ARGV[8] == '' then redis.call('HDEL', KEYS[6], KEYS[1]) else redis.call('HSET', KEYS[6], KEYS[1], ARGV[8]) end
  if recorded == ARGV[9] then
    for i = 1, dropped do redis.call('ZREM', KEYS[base + 2 * tags + i], KEYS[1]) end
  end
end
for i = 1, tags do
  local set = KEYS[base + 2 * i - 1]
  redis.call('ZADD', set, ARGV[3], KEYS[1])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', ARGV[10])
  if ARGV[11] == '' then redis.call('PERSIST', set)
  else
    redis.call('PEXPIRE', set, ARGV[11], 'NX')
    redis.call('PEXPIRE', set, ARGV[11], 'GT')
  end
end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return {1}`)

// The last step of a write-back on a Cluster: SET only if the key's fence counter (same slot) is still
// the one the load saw. KEYS: value, fence counter. ARGV: counter seen ('' none), payload, ttl ('' none).
const SET_IF_UNFENCED = `
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`

/**
 * Writes back what loads produced, refused without writing anything when an invalidation covering the key
 * (on any instance) came after the load began: a refused value is never readable, by anyone.
 *
 * - One Redis: a single script checks everything and writes (WRITE_BACK). Invalidators bump epochs or
 *   log first and look for keys after, so a write-back ordered before that bump is found and removed, and
 *   one ordered after is refused.
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
  ) {}

  /** Returns the keys whose write was refused. */
  async write(all: readonly FencedItem[]): Promise<string[]> {
    // A snapshot read before a lost connection may predate a restart that emptied Redis.
    const losses = this.losses()
    const stale = all.filter((item) => item.fence.losses !== losses).map((item) => item.key)
    const items = stale.length === 0 ? all : all.filter((item) => item.fence.losses === losses)
    if (items.length === 0) return stale
    if (this.layer.isCluster) return [...stale, ...(await this.writeOnCluster(items))]
    const shards = await this.keyIndex.writeShards(items.map((item) => item.full))
    const refused = await Promise.all(items.map((item, i) => this.writeOne(item, shards[i])))
    return [...stale, ...items.filter((_, i) => refused[i]).map((item) => item.key)]
  }

  /** One write-back on one Redis; true when refused. */
  private async writeOne(
    item: FencedItem,
    shard: Awaited<ReturnType<RedisKeyIndex['writeShards']>>[number],
  ): Promise<boolean> {
    const tags = item.tags ?? []
    const carried = new Set(tags)
    const dropped = item.fence.recorded === '' ? [] : item.fence.recorded.split(TAG_SEPARATOR)
    const droppedSets = shard === undefined ? [] : dropped.filter((tag) => !carried.has(tag))
    const now = Date.now()
    const keys = [item.full, this.keyIndex.deletionKey(item.full), this.keyIndex.logKey]
    if (shard !== undefined) keys.push(shard.keysKey, shard.expiryKey, shard.tagsKey)
    for (const tag of tags) keys.push(this.tagStore.tagSetKey(tag), this.tagStore.epochKey(tag))
    for (const tag of droppedSets) keys.push(this.tagStore.tagSetKey(tag))
    keys.push(this.keyIndex.tagCounterKey)
    const epochs = tags.map((tag) => item.fence.epochs?.get(tag) ?? '')
    let { log, seq } = item.fence.load
    for (let round = 0; round < LOG_ROUNDS; round++) {
      const reply = (await this.layer.command('write-back', (client) =>
        WRITE_BACK.run(client, keys, [
          item.payload,
          item.ttl === undefined ? '' : item.ttl,
          item.expiresAt === 0 ? NEVER : item.expiresAt,
          item.fence.load.deletions ?? '',
          log ?? '',
          seq,
          shard === undefined ? '0' : '1',
          tags.join(TAG_SEPARATOR),
          item.fence.recorded,
          membershipCutOff(now),
          setTtlOf(item.expiresAt, now) ?? '',
          tags.length,
          droppedSets.length,
          ...epochs,
          item.fence.load.tagInvalidations ?? '',
        ]),
      )) as [number, string?, string?, string[]?]
      if (reply[0] !== 2) return reply[0] === 0
      // Newer group invalidations: refused if one covers the key, else asked again from the newest.
      if (RedisKeyIndex.covers(reply[3]!, item.key)) return true
      log = reply[1] === '' ? null : reply[1]!
      seq = Number(reply[2])
    }
    return true
  }

  private async writeOnCluster(items: readonly FencedItem[]): Promise<string[]> {
    const tagged = items.filter((item) => item.tags !== undefined && item.tags.length > 0)
    const indexed = items.map((item) => ({
      key: item.key,
      full: item.full,
      expiresAt: item.expiresAt,
      tags: item.tags,
      since: item.fence.load,
    }))
    // (1) Entries an invalidator looking from now on finds.
    await Promise.all([
      this.keyIndex.index(indexed),
      this.tagStore.addMemberships(tagged.map((item) => ({ ...item, tags: item.tags! }))),
      this.tagStore.removeMemberships(
        this.tagStore.droppedMemberships(
          tagged.map((item) => ({ key: item.key, tags: item.tags! })),
          tagged.map((item) =>
            item.fence.recorded === '' ? undefined : item.fence.recorded.split(TAG_SEPARATOR),
          ),
        ),
      ),
    ])
    // (2) Invalidators that looked before (1).
    const allTags = [...new Set(tagged.flatMap((item) => item.tags!))]
    // Tags a load named only once it ran (ctx.setTags): their epochs then are unknown, so any tag
    // invalidation since the load began refuses it.
    const unknown = (item: FencedItem) => item.tags!.some((tag) => item.fence.epochs?.get(tag) === undefined)
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
        const seen = item.fence.epochs?.get(tag)
        return seen === undefined
          ? (tagInvalidations ?? null) !== (item.fence.load.tagInvalidations ?? null)
          : epochs!.get(tag) !== seen
      })
      if (moved) refused.add(item.key)
    }
    // A node that restarted during (1) or (2) may have lost the entries or epochs they relied on.
    if (this.losses() !== items[0]!.fence.losses) return items.map((item) => item.key)
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
            item.fence.load.deletions ?? '',
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
