import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { layoutKeyOf } from '../src/index-layout'
import { LAYOUT_RECHECK_MS } from '../src/known-keys-layout'
import { DELETE_FENCE_MS, LOG_TTL_MS } from '../src/redis-key-index'

// What a layer leaves in Redis once its values are gone: nothing that lives for ever, except what must
// (see docs/internals/invalidation-design.md, "Keys that expire").

let redis: TestRedis
let raw: Redis
let run = 0
beforeAll(async () => {
  redis = await getTestRedis()
  raw = redis.createClient()
})
afterAll(() => redis.close())

const HOUR = 60 * 60_000

function layer(prefix: string, ttl: number | undefined) {
  return new RedisLayer({ client: raw, prefix, ...(ttl === undefined ? {} : { ttl }) })
}

/** Every key under `prefix` with its PTTL (-1: no expiry). */
async function keysUnder(prefix: string): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  let cursor = '0'
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) found.set(key.slice(prefix.length), await raw.pttl(key))
  } while (cursor !== '0')
  return found
}

describe('keys a Redis layer leaves behind', () => {
  it("after invalidateByPrefix('') every key under the prefix expires: the layout record and the log too", async () => {
    const prefix = `${redis.keyPrefix}left${++run}:`
    const stack = new CacheStack([new MemoryLayer(), layer(prefix, 60_000)])
    await stack.mset(Array.from({ length: 50 }, (_, i) => ({ key: `user:${i}`, value: i, tags: ['users'] })))
    await stack.getOrSet('report', async () => 'r')
    await stack.delete('user:1')
    await stack.invalidateByPattern('user:4*')
    expect(await stack.invalidateByPrefix('')).toBe(39)

    const left = await keysUnder(prefix)
    // What is left: the layout record, the log, and the delete counters and tag epochs (10 minutes).
    expect([...left.keys()].filter((key) => !/^~(d:|te:)/.test(key)).sort()).toEqual([
      `~{${prefix}}layout`,
      `~{${prefix}}log`,
    ])
    for (const [key, pttl] of left) expect({ key, expires: pttl > 0 }).toEqual({ key, expires: true })
    expect(left.get(`~{${prefix}}log`)).toBeGreaterThan(LOG_TTL_MS - 60_000)
    // The log outlives every fence window: a load it could fence is refused by the 10-minute counters first.
    expect(LOG_TTL_MS).toBeGreaterThan(DELETE_FENCE_MS)
  })

  it('the log expires a day after its last entry: each group invalidation extends it', async () => {
    const prefix = `${redis.keyPrefix}log${++run}:`
    const stack = new CacheStack([layer(prefix, 60_000)])
    await stack.invalidateByPrefix('a:')
    const log = `${prefix}~{${prefix}}log`
    await raw.pexpire(log, 5_000)
    await stack.invalidateByPattern('b:*')
    expect(await raw.pttl(log)).toBeGreaterThan(LOG_TTL_MS - 60_000)
  })

  it("the layout record outlives every value indexed under it: extended by each instance's re-read, never shortened", async () => {
    const prefix = `${redis.keyPrefix}layout${++run}:`
    const record = `${prefix}~{${prefix}}layout`
    expect(layoutKeyOf(prefix)).toBe(`${prefix}~{${prefix}}layout`)
    const margin = (ttl: number) => ttl + LAYOUT_RECHECK_MS + HOUR

    // The first instance records it to live its values' longest life plus a margin.
    await new CacheStack([layer(prefix, 60_000)]).set('a', 1)
    const first = await raw.pttl(record)
    expect(first).toBeGreaterThan(margin(60_000) - 60_000)
    expect(first).toBeLessThanOrEqual(margin(60_000))

    // An instance whose values live ten hours extends it; one whose values live a second does not shorten it.
    await new CacheStack([layer(prefix, 10 * HOUR)]).set('b', 1)
    expect(await raw.pttl(record)).toBeGreaterThan(margin(10 * HOUR) - 60_000)
    await new CacheStack([layer(prefix, 1_000)]).set('c', 1)
    expect(await raw.pttl(record)).toBeGreaterThan(margin(10 * HOUR) - 60_000)

    // Values without a bound (a layer without ttl) may live for ever: so does the record, whoever comes next.
    await new CacheStack([layer(prefix, undefined)]).set('d', 1)
    expect(await raw.pttl(record)).toBe(-1)
    await new CacheStack([layer(prefix, 60_000)]).set('e', 1)
    expect(await raw.pttl(record)).toBe(-1)
  })

  it('a layer without ttl keeps its layout record for ever (its values may never expire)', async () => {
    const prefix = `${redis.keyPrefix}forever${++run}:`
    const stack = new CacheStack([layer(prefix, undefined)])
    await stack.set('a', 1)
    await stack.invalidateByPrefix('')
    expect(await raw.pttl(`${prefix}~{${prefix}}layout`)).toBe(-1)
  })
})
