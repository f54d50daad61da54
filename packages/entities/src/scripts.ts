/**
 * The Lua the engine runs. Each script touches keys of one hash slot only, all of them passed in KEYS:
 * a script never builds a key name from data (the client reads membership and names the lists itself).
 *
 * Epochs fence work that began earlier: a write carries the epoch it read and is dropped when it moved.
 * Epoch keys live 2 × the fence window after their last change and tombstones 1 ×, so a tombstone never
 * outlives the epoch it is compared with; work that takes longer than half the window is not written.
 */

/**
 * Moves an epoch or counter and keeps it 2 × the fence window. One that expired restarts from the
 * server's clock in microseconds, not from 1: a value read before it expired can never come back
 * (ABA), because every later value is larger than any it held.
 */
const BUMP = `
local function bump(key, ttl)
  local value
  if redis.call('EXISTS', key) == 1 then
    value = redis.call('INCR', key)
  else
    local now = redis.call('TIME')
    local text = now[1] .. string.rep('0', 6 - #now[2]) .. now[2]
    redis.call('SET', key, text)
    value = tonumber(text)
  end
  redis.call('PEXPIRE', key, ttl)
  return value
end`

/** KEYS value, epoch → { value | nil, epoch } */
export const READ_FENCED = `
return { redis.call('GET', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0') }`

/** KEYS value, epoch; ARGV json, ttlMs, epochRead → 1 written | 0 an invalidation came in between */
export const WRITE_FENCED = `
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

/** KEYS value, epoch; ARGV json, ttlMs, epochTtlMs: a write that also stops loads that began before it */
export const WRITE_AND_BUMP = `${BUMP}
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return bump(KEYS[2], ARGV[3])`

/** KEYS value, epoch; ARGV epochTtlMs → keys deleted (0 | 1) */
export const DELETE_FENCED = `${BUMP}
local n = redis.call('DEL', KEYS[1])
bump(KEYS[2], ARGV[1])
return n`

/**
 * KEYS value, members, epoch; ARGV json, ttlMs, onlyIfExists ('1' | '0'), epochTtlMs
 * → { written (0 | 1), lists holding the row... }: the caller re-scores the row in those lists.
 * A write moves the row's epoch, so a load that read the row earlier cannot overwrite it; so does a
 * refresh of a row that is not cached (the load began before the change it refreshes).
 */
export const WRITE_ENTITY = `${BUMP}
bump(KEYS[3], ARGV[4])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return { 0 } end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local lists = redis.call('SMEMBERS', KEYS[2])
table.insert(lists, 1, 1)
return lists`

/**
 * Invalidates one row. KEYS value, members, epoch, [typeCounter], then per list: list, tombstone.
 * ARGV epochTtlMs, tombTtlMs, id, hasCounter (0 | 1), lists, verify (0 | 1).
 * With verify, the declared lists must be exactly the row's membership (else nothing changes and the
 * answer is { -1, lists... } so the caller retries naming them): the row, its id in every list and the
 * membership go in one atomic step. Without, the row goes and the caller clears the returned lists.
 * → { 1, deleted (0 | 1), removed from lists, epoch, lists... }
 */
export const INVALIDATE_ENTITY = `${BUMP}
local hasCounter, nLists = tonumber(ARGV[4]), tonumber(ARGV[5])
local members = redis.call('SMEMBERS', KEYS[2])
local first = 4 + hasCounter
if ARGV[6] == '1' then
  local same = #members == nLists
  local i = 0
  while same and i < nLists do
    same = redis.call('SISMEMBER', KEYS[2], KEYS[first + 2 * i]) == 1
    i = i + 1
  end
  if not same then
    table.insert(members, 1, -1)
    return members
  end
end
-- The DEL first: on a full Redis (noeviction) a script that has written may go on, so the bumps below
-- are not refused and the row goes (the script is atomic either way).
local deleted = redis.call('DEL', KEYS[1])
if hasCounter == 1 then
  bump(KEYS[4], ARGV[1])
end
local epoch = bump(KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
local removed = 0
for i = 0, nLists - 1 do
  removed = removed + redis.call('ZREM', KEYS[first + 2 * i], ARGV[3])
  local tomb = KEYS[first + 2 * i + 1]
  if tonumber(redis.call('GET', tomb) or '0') < epoch then
    redis.call('SET', tomb, epoch, 'PX', ARGV[2])
  end
end
table.insert(members, 1, epoch)
table.insert(members, 1, removed)
table.insert(members, 1, deleted)
table.insert(members, 1, 1)
return members`

/** KEYS counter; ARGV epochTtlMs → the counter moved (it expires like an epoch) */
export const BUMP_COUNTER = `${BUMP}
return bump(KEYS[1], ARGV[1])`

/** KEYS list, tombstone; ARGV id, epoch, tombTtlMs → removed (0 | 1) */
export const REMOVE_INVALIDATED = `
local n = redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return n`

/**
 * Records that a list holds the row (before the list is written), optionally writing the row too
 * (which moves its epoch, as every write does).
 * KEYS members, epoch, value; ARGV listKey, membershipTtlMs, json ('' to leave the row), rowTtlMs, epochTtlMs
 * → the row's epoch
 */
export const REGISTER_MEMBER = `${BUMP}
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  return bump(KEYS[2], ARGV[5])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')`

/**
 * KEYS list, loaded, epoch, tombstone; ARGV id, score, rowEpoch, maxSize, epochTtlMs
 * → 1 added | 0 the row was invalidated after its epoch was read | -1 the list is not cached
 * Moves the list's epoch either way, so a rebuild that began before this add is not written.
 */
export const LIST_ADD = `${BUMP}
bump(KEYS[3], ARGV[5])
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local tomb = redis.call('GET', KEYS[4])
if tomb and tonumber(tomb) > tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) end
return 1`

/** KEYS list, epoch; ARGV id, epochTtlMs, score ('' to remove the id) → ids changed (0 | 1) */
export const LIST_CHANGE = `${BUMP}
local n
if ARGV[3] == '' then
  n = redis.call('ZREM', KEYS[1], ARGV[1])
else
  n = redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[3], ARGV[1])
end
bump(KEYS[2], ARGV[2])
return n`

/** KEYS list, loaded, epoch; ARGV epochTtlMs → keys deleted */
export const LIST_DELETE = `${BUMP}
local n = redis.call('DEL', KEYS[1], KEYS[2])
bump(KEYS[3], ARGV[1])
return n`

/** KEYS list, loaded, epoch; ARGV first, last → { -1, epoch } when not cached, else { total, epoch, ids } */
export const READ_PAGE = `
local epoch = tonumber(redis.call('GET', KEYS[3]) or '0')
if redis.call('EXISTS', KEYS[2]) == 0 then return { -1, epoch } end
return { redis.call('ZCARD', KEYS[1]), epoch, redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2]) }`

/**
 * Writes a rebuilt list. KEYS list, loaded, epoch, then one tombstone per row.
 * ARGV ttlMs, listEpochRead, then per row: id, score, rowEpoch.
 * → { -1 } the list changed since the rebuild began (nothing written)
 *   | { rows written, ids left out because they were invalidated after their epoch was read... }
 */
export const LIST_FILL = `
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[2]) then return { -1 } end
redis.call('DEL', KEYS[1])
local added = 0
local left = {}
for i = 0, #KEYS - 4 do
  local tomb = redis.call('GET', KEYS[4 + i])
  if tomb and tonumber(tomb) > tonumber(ARGV[5 + 3 * i]) then
    left[#left + 1] = ARGV[3 + 3 * i]
  else
    redis.call('ZADD', KEYS[1], ARGV[4 + 3 * i], ARGV[3 + 3 * i])
    added = added + 1
  end
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if added > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
table.insert(left, 1, added)
return left`
