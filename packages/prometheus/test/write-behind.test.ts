/**
 * A real WriteBehind (@layercache/write-strategies) on the test Redis, with a writer that fails: the
 * queue-depth gauge, the retry and dead-letter counters and the flush-duration histogram by outcome.
 */
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { WriteBehind } from '@layercache/write-strategies'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { registerLayercacheMetrics } from '../src'
import { scrape } from './support/scrape'

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

it('queue depth, retries, dead letters and flush durations of a failing writer', async () => {
  const client = redis.createClient()
  const cache = new CacheStack(
    [new MemoryLayer(), new RedisLayer({ client, prefix: `${redis.keyPrefix}wb:` })],
    {
      name: 'orders-cache',
    },
  )
  const name = `${redis.keyPrefix}orders`
  const queue = new WriteBehind({
    cache,
    client,
    queue: name,
    writer: async () => {
      throw new Error('database down')
    },
    maxAttempts: 2,
    // The first failure waits for flush() below, which retries at once.
    retryDelayMs: 600_000,
    maxRetryDelayMs: 600_000,
    pollIntervalMs: 10,
  })
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
  const stopObserving = metrics.observeWriteBehind(queue)
  const labels = { queue: name }

  for (const id of [1, 2, 3]) await queue.write(`order:${id}`, { id })
  expect((await scrape(registry)).sum('layercache_write_behind_queue_depth', labels)).toBe(0) // no round yet
  queue.start()
  // One round: the writer fails, the three entries wait for another attempt and stay in the stream.
  await expect
    .poll(async () => (await scrape(registry)).sum('layercache_write_behind_retries_total', labels))
    .toBe(3)
  const waiting = await scrape(registry)
  expect(waiting.sum('layercache_write_behind_queue_depth', labels)).toBe(3)
  expect(waiting.sum('layercache_write_behind_dead_letters_total', labels)).toBe(0)

  // The second attempt is the last: the entries move to the dead-letter stream and the queue empties.
  await queue.flush(10_000)
  const drained = await scrape(registry)
  expect(drained.sum('layercache_write_behind_dead_letters_total', labels)).toBe(3)
  expect(drained.sum('layercache_write_behind_queue_depth', labels)).toBe(0)
  expect(drained.sum('layercache_write_behind_written_total', labels)).toBe(0)
  expect(
    drained.sum('layercache_write_behind_flush_duration_seconds', { ...labels, outcome: 'failed' }),
  ).toBeGreaterThanOrEqual(2)
  expect(
    drained.sum('layercache_write_behind_flush_duration_seconds', { ...labels, outcome: 'written' }),
  ).toBe(0)

  stopObserving()
  expect((await scrape(registry)).series('layercache_write_behind_queue_depth', labels)).toBe(0)
  await queue.close({ drain: false })
  metrics.stop()
  cache.close()
})
