/**
 * Registration, options and lifecycle: what is registered comes from core's metric definitions, bad
 * options and double registrations are refused with nothing registered, sources come and go, stop()
 * leaves the registry as it found it, and counters stay monotonic across resetStats().
 */
import { channel } from 'node:diagnostics_channel'
import {
  ALL_METRICS,
  CacheStack,
  InvalidOperationError,
  InvalidOptionError,
  PLAIN_CHANNELS,
  prometheusName,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { Counter, Registry, register } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { DEFAULT_BUCKETS, type LayercacheMetricsOptions, registerLayercacheMetrics } from '../src'
import { scrape } from './support/scrape'

const stack = (name: string) => new CacheStack([new MemoryLayer()], { name })
const metricNames = (registry: Registry) => registry.getMetricsAsArray().map((metric) => metric.name)

describe('registration', () => {
  it('registers every metric of the model, with its type, help text and labels', async () => {
    const registry = new Registry()
    const cache = stack('catalog')
    const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
    await cache.getOrSet('k', async () => 1, { ttl: 1000 })
    const scraped = await scrape(registry)
    expect(metricNames(registry).sort()).toEqual(ALL_METRICS.map(prometheusName).sort())
    for (const definition of ALL_METRICS) {
      const family = scraped.family(prometheusName(definition))
      expect(family, definition.name).toBeDefined()
      expect(family!.type).toBe(definition.kind)
      expect(family!.help).toBe(definition.description)
      for (const series of family!.series)
        expect(Object.keys(series.labels).sort()).toEqual([...definition.labels].sort())
    }
    // Every counter and per-layer series of an observed stack is there from the first scrape, zeros included.
    expect(scraped.series('layercache_hits_total', { cache: 'catalog' })).toBe(1)
    expect(scraped.series('layercache_layer_errors_total', { cache: 'catalog', layer: 'memory' })).toBe(1)
    expect(scraped.sum('layercache_loader_calls_total', { cache: 'catalog' })).toBe(1)
    metrics.stop()
  })

  it('uses the buckets given, for all histograms or per histogram', async () => {
    const registry = new Registry()
    const metrics = registerLayercacheMetrics({ registry, buckets: { loader: [0.01, 0.1, 1] } })
    const cache = stack('buckets')
    await cache.getOrSet('k', async () => 1)
    const scraped = await scrape(registry)
    const bounds = (name: string) => [...scraped.family(name)!.series[0]!.buckets!.keys()]
    expect(bounds('layercache_loader_duration_seconds')).toEqual([0.01, 0.1, 1, Number.POSITIVE_INFINITY])
    expect(bounds('layercache_operation_duration_seconds')).toEqual([
      ...DEFAULT_BUCKETS,
      Number.POSITIVE_INFINITY,
    ])
    metrics.stop()

    const all = registerLayercacheMetrics({ registry, buckets: [0.5, 5] })
    await cache.getOrSet('j', async () => 1)
    const again = await scrape(registry)
    expect([...again.family('layercache_loader_duration_seconds')!.series[0]!.buckets!.keys()]).toEqual([
      0.5,
      5,
      Number.POSITIVE_INFINITY,
    ])
    all.stop()
  })

  it("defaults to prom-client's global register", async () => {
    const before = metricNames(register).length
    const metrics = registerLayercacheMetrics({ stacks: [stack('global')] })
    expect(metrics.registry).toBe(register)
    expect(metricNames(register).length).toBe(before + ALL_METRICS.length)
    expect(await register.metrics()).toContain('layercache_hits_total{cache="global"} 0')
    metrics.stop()
    expect(metricNames(register).length).toBe(before)
  })

  it('refuses bad options with InvalidOptionError and registers nothing', () => {
    const registry = new Registry()
    const twins = [stack('twin'), stack('twin')]
    const bad: unknown[] = [
      'registry',
      { registry: {} },
      { registy: registry },
      { registry, buckets: [] },
      { registry, buckets: [0.1, 0.1] },
      { registry, buckets: [0.5, 0.1] },
      { registry, buckets: [-1, 1] },
      { registry, buckets: [Number.POSITIVE_INFINITY] },
      { registry, buckets: { latency: [1] } },
      { registry, buckets: { loader: 'fast' } },
      { registry, stacks: stack('one') },
      { registry, stacks: [{ name: 'not a stack' }] },
      { registry, stacks: twins },
      { registry, writeBehinds: [{ queue: 'q' }] },
      {
        registry,
        writeBehinds: [
          { queue: 'q', stats: () => ({ depth: 0, written: 0, retries: 0, deadLettered: 0 }) },
          { queue: 'q', stats: () => ({ depth: 0, written: 0, retries: 0, deadLettered: 0 }) },
        ],
      },
    ]
    for (const [i, options] of bad.entries()) {
      expect(
        () => registerLayercacheMetrics(options as LayercacheMetricsOptions),
        `bad option #${i}`,
      ).toThrow(InvalidOptionError)
      expect(metricNames(registry)).toEqual([])
    }
    expect(channel(PLAIN_CHANNELS.operationDone).hasSubscribers).toBe(false)
  })

  it('refuses a second registration in the same registry, leaving the first working', async () => {
    const registry = new Registry()
    const cache = stack('twice')
    const first = registerLayercacheMetrics({ registry, stacks: [cache] })
    expect(() => registerLayercacheMetrics({ registry })).toThrow(/already holds a metric named layercache_/)
    await cache.set('k', 1)
    expect((await scrape(registry)).sum('layercache_sets_total', { cache: 'twice' })).toBe(1)
    // Another registry is fine, and after stop() this one is free again.
    const elsewhere = registerLayercacheMetrics({ registry: new Registry() })
    first.stop()
    const second = registerLayercacheMetrics({ registry })
    expect(metricNames(registry)).toHaveLength(ALL_METRICS.length)
    second.stop()
    elsewhere.stop()
  })
})

describe('sources', () => {
  it('observe() adds a stack, its function removes it; one name, one stack', async () => {
    const registry = new Registry()
    const metrics = registerLayercacheMetrics({ registry })
    const a = stack('orders')
    const stopA = metrics.observe(a)
    expect(() => metrics.observe(a)).toThrow(/is observed already/)
    expect(() => metrics.observe(stack('orders'))).toThrow(InvalidOptionError)
    // A namespace shares its parent's stats and name: it is the same source.
    expect(() => metrics.observe(a.namespace('tenant-1'))).toThrow(/another observed stack is named "orders"/)
    expect(() => metrics.observe({} as CacheStack)).toThrow(InvalidOptionError)
    await a.get('missing')
    expect((await scrape(registry)).sum('layercache_misses_total', { cache: 'orders' })).toBe(1)

    stopA()
    stopA()
    expect((await scrape(registry)).series('layercache_misses_total', { cache: 'orders' })).toBe(0)
    const b = stack('orders')
    metrics.observe(b)
    expect((await scrape(registry)).sum('layercache_misses_total', { cache: 'orders' })).toBe(0)
    stopA() // the old function does not remove the new stack of that name
    expect((await scrape(registry)).series('layercache_misses_total', { cache: 'orders' })).toBe(1)
    metrics.stop()
  })

  it('stop() unsubscribes, removes only its own metrics and refuses new sources', async () => {
    const registry = new Registry()
    const foreign = new Counter({ name: 'app_requests_total', help: 'the app', registers: [registry] })
    foreign.inc()
    const metrics = registerLayercacheMetrics({ registry, stacks: [stack('gone')] })
    expect(channel(PLAIN_CHANNELS.operationDone).hasSubscribers).toBe(true)
    metrics.stop()
    metrics.stop()
    expect(channel(PLAIN_CHANNELS.operationDone).hasSubscribers).toBe(false)
    expect(metricNames(registry)).toEqual(['app_requests_total'])
    const scraped = await scrape(registry)
    expect(scraped.families.map((family) => family.name)).toEqual(['app_requests_total'])
    expect(() => metrics.observe(stack('late'))).toThrow(InvalidOperationError)
    expect(() =>
      metrics.observeWriteBehind({
        queue: 'q',
        stats: () => ({ depth: 0, written: 0, retries: 0, deadLettered: 0 }),
      }),
    ).toThrow(InvalidOperationError)
  })

  it('counters stay monotonic when the stack resets its stats', async () => {
    const registry = new Registry()
    const cache = stack('resets')
    const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
    const misses = async () => (await scrape(registry)).sum('layercache_misses_total', { cache: 'resets' })
    for (const key of ['a', 'b', 'c']) await cache.get(key)
    expect(await misses()).toBe(3)
    cache.resetStats()
    await cache.get('d')
    expect(cache.getStats().misses).toBe(1)
    expect(await misses()).toBe(4)
    await cache.get('e')
    expect(await misses()).toBe(5)
    metrics.stop()
  })

  it('concurrent scrapes read the sources once each and agree', async () => {
    const registry = new Registry()
    const cache = stack('concurrent')
    let reads = 0
    const getStats = cache.getStats.bind(cache)
    cache.getStats = () => {
      reads++
      return getStats()
    }
    const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
    await cache.get('x')
    const [one, two] = await Promise.all([scrape(registry), scrape(registry)])
    expect(reads).toBe(1)
    expect(one.sum('layercache_misses_total')).toBe(1)
    expect(two.text).toBe(one.text)
    metrics.stop()
  })
})
