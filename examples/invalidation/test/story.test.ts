import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runInvalidationStory, type StorySummary } from '../src/story'

let redis: TestRedis
let client: Redis

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis.close())

/** Step 4: the hot product went stale under load and was refreshed by one query; step 5: the stats. */
function expectHotProductAndStats({ hotProduct, stats }: StorySummary): void {
  expect(hotProduct.requests).toBe(1000)
  // Every concurrent request was answered with the old price: none waited for the database.
  expect(hotProduct.answeredWithOldPrice).toBe(1000)
  expect(hotProduct.staleServed).toBe(1000)
  // Exactly one query refreshed it, in the background.
  expect(hotProduct.dbQueries).toBe(1)
  expect(hotProduct.loaderCalls).toBe(1)
  expect(hotProduct.backgroundRefreshes).toBe(1)
  expect(hotProduct.nextPrice).toBe(hotProduct.newPrice)
  expect(hotProduct.nextPrice).not.toBe(hotProduct.oldPrice)
  // The summary: counters from the whole story.
  expect(stats.hitRate).toBeGreaterThan(0)
  expect(stats.hitRate).toBeLessThan(1)
  expect(stats.layers[0]?.name).toBe('memory')
  expect(stats.layers[0]?.hits).toBeGreaterThanOrEqual(1000)
  expect(stats.loaderCalls).toBeGreaterThan(500)
  // The price change's listing tag, the category tag, the search prefix.
  expect(stats.invalidations).toBeGreaterThanOrEqual(3)
  expect(stats.rewarmed).toBeGreaterThan(0)
  expect(stats.staleServed).toBeGreaterThanOrEqual(1000)
  expect(stats.backgroundRefreshes).toBeGreaterThanOrEqual(1)
}

describe('examples/invalidation', () => {
  it('tells the e-commerce story against real Redis: price change, category discount, deploy, hot product', async () => {
    const lines: string[] = []
    const summary = await runInvalidationStory(client, (line) => lines.push(line))
    expect(summary.redis).toBe(true)
    // The warmer refilled the homepage before anyone asked, with the new price.
    expect(summary.homepageRefilledBeforeFirstRead).toBe(true)
    expect(summary.otherInstanceSawNewPrice).toBe(true)
    // 500 tagged products plus 'featured' and the homepage that depend on them.
    expect(summary.categoryKeysInvalidated).toBe(502)
    // page1 went with the price change (tagged listing:electronics), page2 by prefix.
    expect(summary.searchPagesInvalidated).toBe(1)
    expect(summary.missesAfterDeploy).toBe(3)
    // Product 1 at $42, then 10 % off: the refilled homepage shows $38.
    expect(summary.homepageAfterDiscount).toContain('Product 1: $38')
    expectHotProductAndStats(summary)
    expect(summary.stats.layers.map((l) => l.name)).toEqual(['memory', 'redis'])
    expect(lines.some((line) => line.startsWith('Stats: hit rate'))).toBe(true)
    expect(lines.length).toBeGreaterThan(4)
  })

  it('runs on the memory layer alone when there is no Redis', async () => {
    const summary = await runInvalidationStory(undefined, () => {})
    expect(summary.redis).toBe(false)
    expect(summary.homepageRefilledBeforeFirstRead).toBe(true)
    expect(summary.categoryKeysInvalidated).toBe(502)
    expect(summary.homepageAfterDiscount).toContain('Product 1: $38')
    expectHotProductAndStats(summary)
  })
})
