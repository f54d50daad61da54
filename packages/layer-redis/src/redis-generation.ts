import { CorruptEntryError, InvalidOperationError } from '@layercache/core'
import type { RedisIO } from './redis-io'

// What a generation may be, in Lua (whose numbers are doubles: exact up to 2^53) and in JavaScript. Both
// scripts answer { status, value as text }: 'corrupt' when the key holds anything else, which they leave.
const VALID = `
local function valid(raw)
  return string.match(raw, '^%d+$') ~= nil and #raw <= 16 and tonumber(raw) <= 9007199254740991
end`

// Raises the shared generation to ARGV[1] when it is lower.
const RAISE_SCRIPT = `${VALID}
local raw = redis.call('GET', KEYS[1])
if raw and not valid(raw) then return { 'corrupt', raw } end
if tonumber(raw or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return { 'ok', ARGV[1] }
end
return { 'ok', raw or '0' }`

// Moves the shared generation to max(current, ARGV[1]) + 1; 'exhausted' at 2^53 - 1 (one more would not
// be exact any more, and every later bump would land on the same number).
const BUMP_SCRIPT = `${VALID}
local raw = redis.call('GET', KEYS[1])
if raw and not valid(raw) then return { 'corrupt', raw } end
local current = math.max(tonumber(raw or '0'), tonumber(ARGV[1]))
if current >= 9007199254740991 then return { 'exhausted', string.format('%.0f', current) } end
local text = string.format('%.0f', current + 1)
redis.call('SET', KEYS[1], text)
return { 'ok', text }`

/** Where a RedisLayer with `prefix` keeps the shared generation (`P~gen`). */
export function generationKeyOf(prefix: string): string {
  return `${prefix}~gen`
}

/** A generation as stored: decimal digits of a whole number up to 2^53 - 1, else undefined. */
function parseGeneration(raw: string): number | undefined {
  if (!/^\d{1,16}$/.test(raw)) return undefined
  const value = Number(raw)
  return Number.isSafeInteger(value) ? value : undefined
}

/**
 * The generation every instance of a stack shares, in one Redis key (`P~gen`, no TTL: losing it would move
 * instances back to a generation whose keys may still exist, so clear() keeps it). Numbers come from Redis
 * alone, never from a host clock or a bus message, and only whole numbers up to 2^53 - 1 are taken: a key
 * holding anything else is reported (CorruptEntryError) and left as it is.
 */
export class RedisGeneration {
  constructor(private readonly layer: RedisIO) {}

  get key(): string {
    return generationKeyOf(this.layer.prefix)
  }

  /** One GET on the common path; the raise script only when the stored number is below `atLeast`. */
  async read(atLeast: number): Promise<number> {
    const stored = await this.layer.command('generation', (client) => client.get(this.key))
    const current = stored === null ? 0 : this.parse(stored)
    if (current >= atLeast) return current
    return this.answer(
      await this.layer.command('generation', (client) => client.eval(RAISE_SCRIPT, 1, this.key, atLeast)),
    )
  }

  async bump(atLeast: number): Promise<number> {
    return this.answer(
      await this.layer.command('generation bump', (client) => client.eval(BUMP_SCRIPT, 1, this.key, atLeast)),
    )
  }

  private answer(reply: unknown): number {
    const [status, value] = reply as [string, string]
    if (status === 'exhausted') {
      throw new InvalidOperationError(
        `${this.layer.name}: the shared generation at "${this.key}" is ${value}, the largest whole number JavaScript holds exactly; it cannot move further (bumpGeneration refused, nothing changed)`,
      )
    }
    return this.parse(status === 'ok' ? value : { corrupt: value })
  }

  private parse(raw: string | { corrupt: string }): number {
    const value = typeof raw === 'string' ? parseGeneration(raw) : undefined
    if (value !== undefined) return value
    const text = typeof raw === 'string' ? raw : raw.corrupt
    throw new CorruptEntryError(
      this.layer.name,
      this.key,
      'unreadable',
      `the shared generation is ${JSON.stringify(text.slice(0, 40))}, not a whole number from 0 to 2^53 - 1; it was not used, and is left as it is`,
    )
  }
}
