import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runInvalidationStory } from '../src/story'

let redis: TestRedis
let client: Redis

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis.close())

describe('examples/invalidation', () => {
  it('tells the e-commerce story against real Redis: price change, category discount, deploy', async () => {
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
    expect(lines.length).toBeGreaterThan(4)
  })

  it('runs on the memory layer alone when there is no Redis', async () => {
    const summary = await runInvalidationStory(undefined, () => {})
    expect(summary.redis).toBe(false)
    expect(summary.homepageRefilledBeforeFirstRead).toBe(true)
    expect(summary.categoryKeysInvalidated).toBe(502)
    expect(summary.homepageAfterDiscount).toContain('Product 1: $38')
  })
})
