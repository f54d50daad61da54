/**
 * Lua scripts over one known-keys shard. KEYS are always the shard's `k`, `kx`, `kt` and `kp` (one hash
 * slot, so each script is atomic on a Cluster too); no key name is ever read from data.
 */

import type { IndexShard } from './index-layout'
import { LuaScript } from './lua-script'
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

// One Redis only: the pending removals of many shards at once (KEYS: each shard's kp then kt), as
// {keys, tags} of all of them.
export const PENDING_ALL_SCRIPT = `
local all, tags = {}, {}
for s = 1, #KEYS, 2 do
  local keys = redis.call('ZRANGE', KEYS[s], 0, -1)
  if #keys > 0 then
    local found = redis.call('HMGET', KEYS[s + 1], unpack(keys))
    for i, key in ipairs(keys) do
      all[#all + 1] = key
      tags[#all] = found[i]
    end
  end
end
return {all, tags}`

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

// One Redis only (it names keys of many slots). Removes keys, each with everything that lets an
// invalidation or a load find it, in one atomic step: its index entries in every place it may be, its tag
// memberships, its value, and (deletes) a bump of its fence counter. Nobody ever sees a key half-removed,
// so nothing is marked pending. A key with a recorded tag whose set is not among KEYS is left untouched
// and answered with its recorded tags: the caller declares those sets and asks again.
// KEYS: the values (n), then m index shards as (k, kx, kt) triplets, then T tag sets, of which the
// first B are left by every key (the sets an invalidation read), then, when counting deletes, the n fence
// counters.
// ARGV: n, m, T, B, count deletes (1/0), fence counter ttl (ms), the T tags (of the sets, in order),
// then the keys in groups that share their places: per group its key count, its place count and its
// places (shard numbers, 1..m).
// Returns {status, i, tags, i, tags...}: status has a character per key, '1' removed (a value was there),
// '0' removed (no value), '2' untouched; then each untouched key's number and recorded tags (NUL-joined).
// Order: values first, then index entries and memberships, then counters: a Redis at maxmemory refuses
// an INCR only before a script's first write (UNLINK, ZREM free memory), so the counters always move.
export const REMOVE = new LuaScript(`
local n, m, T, B = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local setOf = {}
for i = 1, T do setOf[ARGV[6 + i]] = n + 3 * m + i end
local base = n + 3 * m + B
-- Per recorded text: false when one of its tags has no declared set, else its tags outside the base
-- sets (an empty table when it has none).
local split = {}
local function extraOf(text)
  local extra = split[text]
  if extra == nil then
    extra = {}
    local from = 1
    while true do
      local stop = string.find(text, '\\0', from, true)
      local s = setOf[string.sub(text, from, (stop or 0) - 1)]
      if not s then extra = false break end
      if s > base then extra[#extra + 1] = s end
      if not stop then break end
      from = stop + 1
    end
    split[text] = extra
  end
  return extra
end
local recorded, untouched, groups = {}, {}, {}
local at, first, tagged, extras, any = 7 + T, 1, false, false, false
while first <= n do
  local count, pc = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local last, places = first + count - 1, {}
  for p = 1, pc do places[p] = n + 3 * tonumber(ARGV[at + 1 + p]) - 2 end
  at = at + 2 + pc
  for _, s in ipairs(places) do
    local texts = redis.call('HMGET', KEYS[s + 2], unpack(KEYS, first, last))
    for j = 1, count do
      local text = texts[j]
      if text then
        local i = first + j - 1
        text = recorded[i] and (recorded[i] .. '\\0' .. text) or text
        recorded[i] = text
        tagged = true
        local extra = extraOf(text)
        if not extra then untouched[i] = true any = true
        elseif #extra > 0 then extras = true end
      end
    end
  end
  groups[#groups + 1] = {first, last, places}
  first = last + 1
end
local status
if not any then
  -- Every key goes: ranges of KEYS, no tables.
  local found = redis.call('EXISTS', unpack(KEYS, 1, n))
  if found == n or found == 0 then
    redis.call('UNLINK', unpack(KEYS, 1, n))
    status = string.rep(found == 0 and '0' or '1', n)
  else
    local each = {}
    for i = 1, n do each[i] = redis.call('UNLINK', KEYS[i]) == 1 and '1' or '0' end
    status = table.concat(each)
  end
  for _, group in ipairs(groups) do
    for _, s in ipairs(group[3]) do
      redis.call('ZREM', KEYS[s], unpack(KEYS, group[1], group[2]))
      redis.call('ZREM', KEYS[s + 1], unpack(KEYS, group[1], group[2]))
      if tagged then redis.call('HDEL', KEYS[s + 2], unpack(KEYS, group[1], group[2])) end
    end
  end
  for b = 1, B do redis.call('ZREM', KEYS[n + 3 * m + b], unpack(KEYS, 1, n)) end
else
  local all, each = {}, {}
  for i = 1, n do
    if untouched[i] then each[i] = '2' else all[#all + 1] = KEYS[i] end
  end
  if #all > 0 then
    local found = redis.call('EXISTS', unpack(all))
    for i = 1, n do
      if not untouched[i] then
        if found == #all then each[i] = '1' elseif found == 0 then each[i] = '0'
        else each[i] = redis.call('UNLINK', KEYS[i]) == 1 and '1' or '0' end
      end
    end
    if found == #all or found == 0 then redis.call('UNLINK', unpack(all)) end
    for _, group in ipairs(groups) do
      local keys = {}
      for i = group[1], group[2] do if not untouched[i] then keys[#keys + 1] = KEYS[i] end end
      if #keys > 0 then
        for _, s in ipairs(group[3]) do
          redis.call('ZREM', KEYS[s], unpack(keys))
          redis.call('ZREM', KEYS[s + 1], unpack(keys))
          redis.call('HDEL', KEYS[s + 2], unpack(keys))
        end
      end
    end
    for b = 1, B do redis.call('ZREM', KEYS[n + 3 * m + b], unpack(all)) end
  end
  status = table.concat(each)
end
if extras then
  local bySet = {}
  for i = 1, n do
    if recorded[i] and not untouched[i] then
      for _, s in ipairs(extraOf(recorded[i])) do
        local list = bySet[s]
        if list then list[#list + 1] = KEYS[i] else bySet[s] = {KEYS[i]} end
      end
    end
  end
  for s, list in pairs(bySet) do redis.call('ZREM', KEYS[s], unpack(list)) end
end
if ARGV[5] == '1' then
  local c = n + 3 * m + T
  for i = 1, n do
    if not untouched[i] then
      redis.call('INCR', KEYS[c + i])
      redis.call('PEXPIRE', KEYS[c + i], ARGV[6])
    end
  end
end
local reply = {status}
if any then
  for i = 1, n do
    if untouched[i] then reply[#reply + 1] = i reply[#reply + 1] = recorded[i] end
  end
end
return reply`)
