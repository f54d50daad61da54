/**
 * Lua scripts over one known-keys shard. KEYS are always the shard's `k`, `kx`, `kt` and `kp` (one hash
 * slot, so each script is atomic on a Cluster too); no key name is ever read from data.
 */

import type { IndexShard } from './index-layout'
import type { SlotTask } from './slot-pipelines'

/** A task running one of these scripts on `shard` (its three structures as KEYS), for execBySlotOwner. */
export function shardScript(
  shard: IndexShard,
  script: string,
  args: readonly (string | number | Buffer)[],
): SlotTask {
  return {
    slotKey: shard.keysKey,
    add: (pipe) =>
      pipe.eval(script, 4, shard.keysKey, shard.expiryKey, shard.tagsKey, shard.pendingKey, ...args),
  }
}

// Drops index entries whose key expired more than the grace period ago (ARGV[1]: the cut-off score,
// ARGV[2]: at most this many), from all three at once, so a writer re-adding the key in between (with a
// later score) is never half-removed; and pending removals older than ARGV[3] (their remover stopped
// half-way), with their recorded tags unless the key was indexed again.
export const GC_SCRIPT = `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
local stuck = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(stuck) do
  redis.call('ZREM', KEYS[4], key)
  if not redis.call('ZSCORE', KEYS[1], key) then redis.call('HDEL', KEYS[3], key) end
end
return #dead`

// Takes keys (ARGV[2..]) out of the shard and marks them pending (scored ARGV[1]) until their values are
// unlinked (RELEASE_SCRIPT); returns the tags recorded for each, which stay recorded until then.
export const FORGET_SCRIPT = `
local keys = {unpack(ARGV, 2)}
local tags = redis.call('HMGET', KEYS[3], unpack(keys))
redis.call('ZREM', KEYS[1], unpack(keys))
redis.call('ZREM', KEYS[2], unpack(keys))
for _, key in ipairs(keys) do redis.call('ZADD', KEYS[4], ARGV[1], key) end
return tags`

// The values of the keys (ARGV) are unlinked: no longer pending, and their recorded tags go unless a
// writer indexed the key again meanwhile.
export const RELEASE_SCRIPT = `
redis.call('ZREM', KEYS[4], unpack(ARGV))
for _, key in ipairs(ARGV) do
  if not redis.call('ZSCORE', KEYS[1], key) then redis.call('HDEL', KEYS[3], key) end
end
return #ARGV`

// The pending removals of the shard, with the tags recorded for each: {keys, tags}.
export const PENDING_SCRIPT = `
local keys = redis.call('ZRANGE', KEYS[4], 0, -1)
if #keys == 0 then return {{}, {}} end
return {keys, redis.call('HMGET', KEYS[3], unpack(keys))}`

// Removes up to ARGV[3] entries in the lex range [ARGV[1], ARGV[2]] (a layer's keys in a shared index);
// returns how many.
export const FORGET_RANGE_SCRIPT = `
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #keys > 0 then
  redis.call('ZREM', KEYS[1], unpack(keys))
  redis.call('ZREM', KEYS[2], unpack(keys))
  redis.call('HDEL', KEYS[3], unpack(keys))
end
return #keys`

// Migration, destination side: ARGV holds (key, expiry score, tags or '') triples. Never lowers what a
// live writer put there meanwhile: the lex entry is added if missing, the expiry only raised, the tags
// only set if none are recorded. An entry that outlives its key is collected; one too short would not be.
export const MOVE_IN_SCRIPT = `
for i = 1, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[i])
  redis.call('ZADD', KEYS[2], 'GT', ARGV[i + 1], ARGV[i])
  if ARGV[i + 2] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 2]) end
end
return #ARGV / 3`

// Migration, source side: ARGV holds (key, expiry score as read, or '' when it had none) pairs. Removes
// only entries whose expiry is still the one copied, so an entry a writer re-indexed meanwhile stays
// (the next pass copies it again). Returns how many were removed.
export const REMOVE_MOVED_SCRIPT = `
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if (score or '') == ARGV[i + 1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
return removed`
