import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WriteBehind, type WriteBehindEntry } from '../src'

let redis: TestRedis
let client: Redis
let run = 0
beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis.close())

function setup(options: Partial<ConstructorParameters<typeof WriteBehind>[0]> = {}) {
  run++
  const cache = new CacheStack([
    new MemoryLayer(),
    new RedisLayer({ client, prefix: `${redis.keyPrefix}wb${run}` }),
  ])
  const db = new Map<string, unknown>()
  const seen: WriteBehindEntry[] = []
  const queue = new WriteBehind({
    cache,
    client,
    queue: `${redis.keyPrefix}q${run}`,
    writer: async (entries) => {
      for (const entry of entries) {
        seen.push(entry)
        db.set(entry.key, entry.value)
      }
    },
    pollIntervalMs: 10,
    ...options,
  })
  return { cache, db, seen, queue }
}

describe('WriteBehind', () => {
  it('updates the cache at once and the database on flush, once per write', async () => {
    const { cache, db, seen, queue } = setup()
    const { id } = await queue.write('order:1', { total: 10 })
    expect(await cache.get('order:1')).toEqual({ total: 10 })
    expect(db.size).toBe(0)
    await queue.flush()
    expect(db.get('order:1')).toEqual({ total: 10 })
    expect(seen.map((e) => e.id)).toEqual([id])
    expect(queue.stats()).toMatchObject({ queued: 1, written: 1, depth: 0 })
  })

  it('retries a failing writer and dead-letters after maxAttempts', async () => {
    let calls = 0
    const { queue } = setup({
      writer: async () => {
        calls++
        throw new Error('db down')
      },
      maxAttempts: 3,
      retryDelayMs: 5,
    })
    await queue.write('k', 1)
    await queue.flush(5_000)
    expect(calls).toBe(3)
    const dead = await queue.deadLetters()
    expect(dead).toHaveLength(1)
    expect(dead[0]).toMatchObject({ key: 'k', value: 1, attempt: 3, error: 'db down' })
  })

  it('drains on dispose (await using), and closing again waits for the same drain', async () => {
    const { db, queue } = setup()
    let again: Promise<void>
    {
      await using started = queue.start()
      await started.write('order:2', { total: 20 })
      again = started.close()
    }
    expect(queue.close()).toBe(again)
    await again
    expect(db.get('order:2')).toEqual({ total: 20 })
  })
})
