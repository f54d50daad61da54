import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCacheManagerStory } from '../src/story'

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

describe('examples/cache-manager', { timeout: 60_000 }, () => {
  it('the same cache-manager code: stale on the other instance before, fresh on layercache after', async () => {
    const lines: string[] = []
    const summary = await runCacheManagerStory(redis.url, `${redis.keyPrefix}cm:`, (line) => lines.push(line))
    // Memory + @keyv/redis: B's memory tier still has the old price.
    expect(summary.before.bAfterChange).toBe(249)
    // On the stack: the delete reached B's memory over the bus.
    expect(summary.after.bAfterChange).toBe(199)
    // Both prices cache-manager wrote carried the tag; both were read from the database again.
    expect(summary.after.tagged).toBe(2)
    expect(summary.after.readsAfterTag).toBe(2)
    expect(lines).toHaveLength(3)
  })
})
