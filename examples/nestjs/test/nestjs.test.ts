import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runNestStory } from '../src/story'

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

// Generous: the suite shares the machine with every other test file (no timing is asserted).
describe('examples/nestjs', { timeout: 60_000 }, () => {
  it('tells the story: cached reads, one query for 1000 cold requests, a change seen by the other instance', async () => {
    const lines: string[] = []
    const summary = await runNestStory(redis.url, `${redis.keyPrefix}nest:`, (line) => lines.push(line))

    // A's miss loads, A's second read is a memory hit, B finds the product in Redis.
    expect(summary.queriesAfterReads).toEqual([1, 1, 1])
    expect(summary.bReadFrom).toBe('redis')
    // The stampede over both instances: one query (the fleet-wide single-flight coordinator).
    expect(summary.stampedeRequests).toBe(1000)
    expect(summary.stampedeQueries).toBe(1)
    expect(summary.stampedeAllAnswered).toBe(true)
    // A's price change reaches B's memory: product and category list both answer the new price.
    expect(summary.priceOnBAfterChange).toBe(summary.newPrice)
    expect(summary.listPriceOnBAfterChange).toBe(summary.newPrice)
    // CACHE_MANAGER on the same stack: the session crosses instances, and so does its deletion.
    expect(summary.sessionOnB).toEqual({ user: 'ada' })
    expect(summary.sessionStatusOnAAfterLogout).toBe(404)
    // A missing product is cached as such.
    expect(summary.missingProductStatus).toBe(404)
    expect(summary.missingProductQueries).toBe(1)
    expect(lines).toHaveLength(7)
  })
})
