/**
 * A Redis that goes away: with gracefulDegradation the circuit-state gauge moves from closed to open,
 * the opening and the layer's errors are counted, and a scrape still answers (the key-index size of the
 * unreachable layer is left out rather than failing or stalling the scrape).
 */
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { connectionReady, spawnTestRedis, type TestRedis } from '@layercache/test-utils'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { registerLayercacheMetrics } from '../src'
import { scrape } from './support/scrape'

let redis: TestRedis
beforeAll(async () => {
  redis = await spawnTestRedis()
})
afterAll(() => redis.close())

it('circuit state, openings and layer errors when Redis stops', async () => {
  // No offline queue and no retries: with the server gone, each command fails at once.
  const client = redis.createClient({ enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  await connectionReady(client)
  const cache = new CacheStack(
    [new MemoryLayer(), new RedisLayer({ client, prefix: `${redis.keyPrefix}faults:` })],
    { name: 'degraded', gracefulDegradation: { failureThreshold: 1, retryAfterMs: 600_000 } },
  )
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
  const labels = { cache: 'degraded', layer: 'redis' }
  await cache.set('k', 1)

  const before = await scrape(registry)
  expect(before.sum('layercache_circuit_state', labels)).toBe(0)
  expect(before.sum('layercache_key_index_size', labels)).toBe(1)
  // Only layers behind a circuit breaker have the gauge.
  expect(before.series('layercache_circuit_state', { layer: 'memory' })).toBe(0)

  await redis.server!.stop()
  // Memory misses go to Redis, which fails: the circuit opens and the call carries on without it.
  await expect
    .poll(async () => {
      await cache.get(`missing:${Math.random()}`)
      return (await scrape(registry)).sum('layercache_circuit_state', labels)
    })
    .toBe(2)

  const after = await scrape(registry)
  expect(after.sum('layercache_circuit_opens_total', { cache: 'degraded' })).toBe(1)
  expect(after.sum('layercache_layer_errors_total', labels)).toBeGreaterThanOrEqual(1)
  expect(after.series('layercache_key_index_size', labels)).toBe(0)
  expect(await cache.get('k')).toBe(1) // memory still answers
  metrics.stop()
  cache.close()
})
