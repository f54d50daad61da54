import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'

/** A Lua script, sent by its SHA1 and only sent whole when the node does not know it yet. */
export interface Script {
  readonly text: string
  readonly sha: string
}

function script(text: string): Script {
  return { text, sha: createHash('sha1').update(text).digest('hex') }
}

/**
 * KEYS: token counter, lease, result. ARGV: lease ms, token counter ms, owner nonce.
 * Returns the new token (as text) or nil when the lease is held. Tokens only grow: the counter's next
 * value, but never less than Redis' clock in microseconds, so they keep growing after the counter
 * expired (a database that stored the last token still accepts the next holder's).
 */
export const ACQUIRE = script(`
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local token = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, floor)
local text = string.format('%.0f', token)
redis.call('SET', KEYS[1], text, 'PX', ARGV[2])
redis.call('SET', KEYS[2], text .. ':' .. ARGV[3], 'PX', ARGV[1])
redis.call('DEL', KEYS[3])
return text
`)

/** KEYS: lease. ARGV: lease value, lease ms. 1 when still held (and extended), else 0. */
export const RENEW = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

/**
 * KEYS: lease, result. ARGV: lease value, result ms, result payload or '', channel or '', message, message
 * without a result. Compare-and-delete: 1 when the lease was still held (the result is stored for waiters,
 * or an older one removed), 2 when it was held but Redis refused to store the result (a full Redis refuses
 * a SET; the lease goes all the same, so waiters load instead of waiting for it to expire), else 0. With a
 * channel, also publishes the release (standalone: waiters are woken without another round trip; a
 * Cluster publishes on the channel's own shard, after the reply).
 */
export const RELEASE = script(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local released = 1
if ARGV[3] ~= '' then
  local stored = redis.pcall('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
  if type(stored) == 'table' and stored.err then released = 2 end
end
if released == 2 or ARGV[3] == '' then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], released == 1 and ARGV[5] or ARGV[6]) end
return released
`)

/** KEYS: lease. ARGV: ':' + owner nonce. Undoes an acquisition whose reply came too late to be used. */
export const ABANDON = script(`
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, -#ARGV[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

/** KEYS: lease, result. Returns { lease PTTL (-2: gone), result payload or nil }. */
export const CHECK = script(`
return { redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) }
`)

/** EVALSHA, falling back to EVAL on the node that does not have the script cached yet. */
export async function runScript(
  client: Redis | Cluster,
  { text, sha }: Script,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await client.evalsha(sha, keys.length, ...keys, ...args)
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return client.eval(text, keys.length, ...keys, ...args)
  }
}
