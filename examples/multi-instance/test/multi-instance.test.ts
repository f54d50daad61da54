import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runMultiInstanceStory } from '../src/story'

let redis: TestRedis

beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

describe('examples/multi-instance', () => {
  it('a price change on one app process reaches the memory of the two others', async () => {
    const lines: string[] = []
    const shop = `${redis.keyPrefix}shop:`
    const summary = await runMultiInstanceStory(redis.url, (line) => lines.push(line), shop)
    expect(summary.apps).toEqual(['app-a', 'app-b', 'app-c'])
    expect(summary.servedBefore).toEqual(['memory', 'memory', 'memory'])
    expect(summary.heardBy).toEqual(['app-b', 'app-c'])
    expect(summary.pricesAfter).toEqual([12, 12, 12])
    expect(summary.servedAfter).toEqual(['redis or database', 'redis or database', 'redis or database'])
    expect(summary.stampedeRequests).toBe(150)
    expect(summary.stampedeDatabaseReads).toBe(1)
    expect(lines.length).toBeGreaterThan(5)
    // The run leaves nothing in Redis: products, cache (the layer's own keys too), leases, bus epoch.
    const client = redis.createClient()
    expect(await client.keys(`${shop}*`)).toEqual([])
  }, 60_000)
})
