/**
 * Lua scripts over one known-keys shard. KEYS are always the shard's `k`, `kx` and `kt` (one hash slot,
 * so each script is atomic on a Cluster too); no key name is ever read from data.
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
    add: (pipe) => pipe.eval(script, 3, shard.keysKey, shard.expiryKey, shard.tagsKey, ...args),
  }
}

// Drops index entries whose key expired more than the grace period ago (ARGV[1]: the cut-off score,
// ARGV[2]: at most this many), from all three at once, so a writer re-adding the key in between (with a
// later score) is never half-removed.
export const GC_SCRIPT = `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
return #dead`

// Removes keys (ARGV) from the shard and returns the tags recorded for each.
export const FORGET_SCRIPT = `
local tags = redis.call('HMGET', KEYS[3], unpack(ARGV))
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('HDEL', KEYS[3], unpack(ARGV))
return tags`

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
