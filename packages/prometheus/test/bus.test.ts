/**
 * Two instances (stacks with their own memory and a real RedisInvalidationBus each) over one Redis: the
 * unverified-flush counter (each flushes once as it first hears the other), messages published and
 * applied, and the bus-lag histogram of the receiving side.
 */
import { CacheStack } from '@layercache/core'
import { RedisInvalidationBus } from '@layercache/distributed'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { registerLayercacheMetrics } from '../src'
import { scrape } from './support/scrape'

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

async function instance(name: string) {
  const client = redis.createClient()
  const subscriber = redis.createClient()
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: `${redis.keyPrefix}bus`,
    signingSecret: 'a-secret-of-32-characters-long!!',
    heartbeatMs: 1000,
  })
  const stack = new CacheStack(
    [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix: `${redis.keyPrefix}shared:` })],
    { name, invalidationBus: bus },
  )
  await bus.ready
  return {
    stack,
    async close() {
      stack.close()
      await bus.close()
    },
  }
}

it('unverified flushes, published and applied invalidations, and bus lag', async () => {
  const a = await instance('api-a')
  const b = await instance('api-b')
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [a.stack, b.stack] })

  // Each instance flushes its memory once when it first hears the other: it may have missed messages.
  await expect
    .poll(async () =>
      (await scrape(registry)).sum('layercache_bus_unverified_flushes_total', { cache: 'api-b' }),
    )
    .toBeGreaterThan(0)

  await a.stack.set('product:1', { price: 10 })
  expect(await b.stack.get('product:1')).toEqual({ price: 10 })
  await a.stack.delete('product:1')
  await expect
    .poll(async () =>
      (await scrape(registry)).sum('layercache_bus_peer_invalidations_total', { cache: 'api-b' }),
    )
    .toBeGreaterThan(0)
  await expect.poll(() => b.stack.layers[0]!.get('product:1')).toBeUndefined()

  const scraped = await scrape(registry)
  expect(scraped.sum('layercache_bus_published_total', { cache: 'api-a' })).toBeGreaterThan(0)
  expect(scraped.sum('layercache_bus_publish_errors_total', { cache: 'api-a' })).toBe(0)
  expect(scraped.sum('layercache_bus_lag_seconds', { cache: 'api-b' })).toBeGreaterThan(0)
  expect(scraped.sum('layercache_bus_lag_seconds', { cache: 'api-a' })).toBe(0) // its own message is ignored
  expect(
    scraped.sum('layercache_operation_duration_seconds', {
      cache: 'api-a',
      operation: 'bus.publish',
      outcome: 'ok',
    }),
  ).toBeGreaterThan(0)

  metrics.stop()
  await Promise.all([a.close(), b.close()])
})
