/**
 * Real traffic through a real CacheStack (memory over a spawned Redis) moves the series a Prometheus
 * scrape of a real prom-client Registry shows: per-layer hits, misses, loader runs and errors, call
 * durations by layer and outcome, stale answers by reason, coalesced callers, fenced write-backs and the
 * key-index size.
 */
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type LayercacheMetrics, registerLayercacheMetrics } from '../src'
import { scrape } from './support/scrape'

let redis: TestRedis
let run = 0
const cleanup: Array<() => void> = []

beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())
afterEach(() => {
  for (const done of cleanup.splice(0)) done()
})

/** A stack named `name` over its own key space of the test Redis, and metrics in a fresh registry. */
function setup(name = `shop${++run}`): {
  cache: CacheStack
  registry: Registry
  metrics: LayercacheMetrics
  prefix: string
} {
  const prefix = `${redis.keyPrefix}${name}:`
  const cache = new CacheStack(
    [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client: redis.createClient(), prefix })],
    {
      name,
    },
  )
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
  cleanup.push(() => {
    metrics.stop()
    cache.close()
  })
  return { cache, registry, metrics, prefix }
}

describe('traffic moves the series', () => {
  it('hits per layer, misses, and call durations by the layer that answered', async () => {
    const { cache, registry, prefix } = setup()
    const peer = new CacheStack(
      [new MemoryLayer(), new RedisLayer({ client: redis.createClient(), prefix })],
      {
        name: cache.name,
      },
    )
    cleanup.push(() => peer.close())
    await cache.set('p:1', { price: 10 })
    expect(await cache.get('p:1')).toEqual({ price: 10 }) // memory
    expect(await cache.get('p:2')).toBeUndefined() // no layer has it
    // The peer is another process's stack: it finds p:1 in Redis only, then in its own memory.
    const metrics = registerLayercacheMetrics({ registry: new Registry(), stacks: [peer] })
    cleanup.push(() => metrics.stop())
    expect(await peer.get('p:1')).toEqual({ price: 10 })
    expect(await peer.get('p:1')).toEqual({ price: 10 })

    const own = await scrape(registry)
    const cacheLabel = { cache: cache.name }
    expect(own.sum('layercache_hits_total', cacheLabel)).toBe(1)
    expect(own.sum('layercache_misses_total', cacheLabel)).toBe(1)
    expect(own.sum('layercache_layer_hits_total', { ...cacheLabel, layer: 'memory' })).toBe(1)
    expect(own.sum('layercache_layer_hits_total', { ...cacheLabel, layer: 'redis' })).toBe(0)
    expect(own.sum('layercache_layer_misses_total', { ...cacheLabel, layer: 'redis' })).toBe(1)
    expect(own.sum('layercache_sets_total', cacheLabel)).toBe(1)
    const theirs = await scrape(metrics.registry)
    expect(theirs.sum('layercache_layer_hits_total', { layer: 'redis' })).toBe(1)
    expect(theirs.sum('layercache_layer_hits_total', { layer: 'memory' })).toBe(1)

    // Histograms see every call past memory in the process (the two stacks share a name here).
    const duration = 'layercache_operation_duration_seconds'
    expect(own.sum(duration, { ...cacheLabel, operation: 'get', layer: 'redis', outcome: 'hit' })).toBe(1)
    expect(own.sum(duration, { ...cacheLabel, operation: 'get', layer: 'none', outcome: 'miss' })).toBe(1)
    expect(own.sum(duration, { ...cacheLabel, operation: 'set', outcome: 'ok' })).toBe(1)
    // The memory hits were counted, not timed.
    expect(own.sum(duration, { ...cacheLabel, operation: 'get' })).toBe(2)
  })

  it('loader runs and failures: the loader histogram by outcome, the call and error counters', async () => {
    const { cache, registry } = setup()
    expect(await cache.getOrSet('user:1', async () => ({ id: 1 }))).toEqual({ id: 1 })
    expect(await cache.getOrSet('user:1', async () => ({ id: 99 }))).toEqual({ id: 1 })
    await expect(
      cache.getOrSet('user:2', async () => {
        throw new Error('database down')
      }),
    ).rejects.toThrow('database down')

    const scraped = await scrape(registry)
    const cacheLabel = { cache: cache.name }
    const loader = 'layercache_loader_duration_seconds'
    expect(scraped.sum(loader, { ...cacheLabel, trigger: 'miss', outcome: 'ok' })).toBe(1)
    expect(scraped.sum(loader, { ...cacheLabel, trigger: 'miss', outcome: 'error' })).toBe(1)
    expect(scraped.sum('layercache_loader_calls_total', cacheLabel)).toBe(2)
    expect(scraped.sum('layercache_loader_errors_total', cacheLabel)).toBe(1)
    const duration = 'layercache_operation_duration_seconds'
    expect(scraped.sum(duration, { ...cacheLabel, operation: 'getOrSet', outcome: 'loaded' })).toBe(1)
    expect(scraped.sum(duration, { ...cacheLabel, operation: 'getOrSet', outcome: 'error' })).toBe(1)
  })

  it('coalesced callers and a fenced write-back', async () => {
    const { cache, registry } = setup()
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let loads = 0
    const loader = async () => {
      loads++
      await gate
      return 'v'
    }
    const callers = [
      cache.getOrSet('hot', loader),
      cache.getOrSet('hot', loader),
      cache.getOrSet('hot', loader),
    ]
    await expect.poll(() => loads).toBe(1)
    release()
    expect(await Promise.all(callers)).toEqual(['v', 'v', 'v'])

    // The key is invalidated while its loader runs: the loaded value must not be written back.
    expect(
      await cache.getOrSet('fenced', async () => {
        await cache.delete('fenced')
        return 'old'
      }),
    ).toBe('old')
    expect(await cache.get('fenced')).toBeUndefined()

    const scraped = await scrape(registry)
    expect(scraped.sum('layercache_coalesced_total', { cache: cache.name })).toBe(2)
    expect(scraped.sum('layercache_fenced_writes_total', { cache: cache.name })).toBeGreaterThanOrEqual(1)
    expect(
      scraped.sum('layercache_operation_duration_seconds', { operation: 'getOrSet', outcome: 'coalesced' }),
    ).toBe(2)
  })

  it('stale values served, by reason', async () => {
    const { cache, registry } = setup()
    const failing = async (): Promise<string> => {
      throw new Error('database down')
    }
    await cache.getOrSet('s:error', async () => 'v1', { ttl: 5, staleIfError: 60_000 })
    // Once the 5 ms TTL is over, the failing loader is answered by the stale value.
    await expect
      .poll(async () => {
        expect(await cache.getOrSet('s:error', failing, { ttl: 5, staleIfError: 60_000 })).toBe('v1')
        return cache.getStats().staleOnError
      })
      .toBeGreaterThan(0)

    await cache.getOrSet('s:swr', async () => 'w1', { ttl: 5, staleWhileRevalidate: 60_000 })
    let refreshes = 0
    const refresh = async () => {
      refreshes++
      return 'w2'
    }
    await expect
      .poll(async () => {
        await cache.getOrSet('s:swr', refresh, { ttl: 5, staleWhileRevalidate: 60_000 })
        return cache.getStats().staleServed - cache.getStats().staleOnError
      })
      .toBeGreaterThan(0)
    await expect.poll(() => refreshes).toBeGreaterThan(0)

    const scraped = await scrape(registry)
    const stale = 'layercache_stale_served_total'
    expect(scraped.sum(stale, { cache: cache.name, reason: 'error' })).toBe(cache.getStats().staleOnError)
    expect(scraped.sum(stale, { cache: cache.name, reason: 'revalidate' })).toBeGreaterThan(0)
    expect(scraped.sum(stale, { cache: cache.name, reason: 'timeout' })).toBe(0)
    expect(
      scraped.sum('layercache_operation_duration_seconds', {
        cache: cache.name,
        operation: 'getOrSet',
        outcome: 'stale',
      }),
    ).toBeGreaterThan(0)
    expect(scraped.sum('layercache_background_refreshes_total', { cache: cache.name })).toBeGreaterThan(0)
  })

  it("the key index size is the Redis layer's key count, read at scrape time", async () => {
    const { cache, registry } = setup()
    const size = async () =>
      (await scrape(registry)).sum('layercache_key_index_size', { cache: cache.name, layer: 'redis' })
    expect(await size()).toBe(0)
    await cache.mset([
      { key: 'a', value: 1 },
      { key: 'b', value: 2 },
      { key: 'c', value: 3 },
    ])
    expect(await size()).toBe(3)
    await cache.delete('b')
    expect(await size()).toBe(2)
    // The memory layer has no key index: no series for it.
    expect((await scrape(registry)).series('layercache_key_index_size', { layer: 'memory' })).toBe(0)
  })
})
