import type { RedisLayer } from './redis-layer'

// Raises the shared generation to ARGV[1] when it is lower; returns it.
const RAISE_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return current`

// Moves the shared generation to max(current, ARGV[1]) + 1; returns it.
const BUMP_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then current = floor end
current = current + 1
redis.call('SET', KEYS[1], current)
return current`

/** Where a RedisLayer with `prefix` keeps the shared generation (`P~gen`). */
export function generationKeyOf(prefix: string): string {
  return `${prefix}~gen`
}

/**
 * The generation every instance of a stack shares, in one Redis key (`P~gen`, no TTL: losing it would move
 * instances back to a generation whose keys may still exist, so clear() keeps it). Numbers come from Redis
 * alone, never from a host clock.
 */
export class RedisGeneration {
  constructor(private readonly layer: RedisLayer) {}

  get key(): string {
    return generationKeyOf(this.layer.prefix)
  }

  /** One GET on the common path; the raise script only when the stored number is below `atLeast`. */
  async read(atLeast: number): Promise<number> {
    const stored = await this.layer.command('generation', (client) => client.get(this.key))
    const current = stored === null ? 0 : Number(stored)
    if (current >= atLeast) return current
    const raised = await this.layer.command('generation', (client) =>
      client.eval(RAISE_SCRIPT, 1, this.key, atLeast),
    )
    return Number(raised)
  }

  async bump(atLeast: number): Promise<number> {
    const next = await this.layer.command('generation bump', (client) =>
      client.eval(BUMP_SCRIPT, 1, this.key, atLeast),
    )
    return Number(next)
  }
}
