/** The metric definitions both exporters share: decoding operation.done, reading stats, naming. */
import {
  ALL_METRICS,
  CacheStack,
  HISTOGRAMS,
  type OperationDone,
  observationsOf,
  prometheusName,
  STACK_METRICS,
  stackSamples,
  subscribeObservations,
  writeBehindSamples,
} from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { MemoryLayer, RemoteLayer } from './support/remote-layer'

const done = (context: OperationDone['context'], durationMs = 250, error?: unknown): OperationDone => ({
  context,
  durationMs,
  ...(error === undefined ? {} : { error }),
})

describe('metrics model', () => {
  it('names are unique and Prometheus names follow its conventions', () => {
    const names = ALL_METRICS.map((metric) => metric.name)
    expect(new Set(names).size).toBe(names.length)
    expect(prometheusName(HISTOGRAMS.operation)).toBe('layercache_operation_duration_seconds')
    expect(prometheusName(STACK_METRICS.hits)).toBe('layercache_hits_total')
    expect(prometheusName(STACK_METRICS.keyIndexSize)).toBe('layercache_key_index_size')
    for (const metric of ALL_METRICS) expect(prometheusName(metric)).toMatch(/^[a-z_]+$/)
  })

  it('decodes each kind of call into the histogram and labels it belongs to', () => {
    const base = { cache: 'shop', key: 'k', keyCount: 1 } as const
    expect(observationsOf(done({ ...base, operation: 'get', layer: 'redis', hit: true }))).toEqual([
      {
        metric: HISTOGRAMS.operation,
        value: 0.25,
        labels: { cache: 'shop', operation: 'get', layer: 'redis', outcome: 'hit' },
      },
    ])
    const outcome = (context: Partial<OperationDone['context']>, error?: unknown) =>
      observationsOf(
        done({ ...base, operation: 'getOrSet', ...context } as OperationDone['context'], 1, error),
      )[0]!.labels.outcome
    expect(outcome({})).toBe('miss')
    expect(outcome({ loaded: true })).toBe('loaded')
    expect(outcome({ coalesced: true })).toBe('coalesced')
    expect(outcome({ stale: 'error' })).toBe('stale')
    expect(outcome({}, new Error('x'))).toBe('error')
    // A load is observed only when its loader ran, with the loader's own duration.
    expect(
      observationsOf(done({ operation: 'load', cache: 'shop', key: 'k', trigger: 'miss', layer: 'redis' })),
    ).toEqual([])
    expect(
      observationsOf(
        done({ operation: 'load', cache: 'shop', key: 'k', trigger: 'stale', loaded: true, loaderMs: 40 }),
      ),
    ).toEqual([
      { metric: HISTOGRAMS.loader, value: 0.04, labels: { cache: 'shop', trigger: 'stale', outcome: 'ok' } },
    ])
    expect(
      observationsOf(
        done({ operation: 'bus.receive', cache: 'shop', operations: [], sentAt: 1000, receivedAt: 1003 }),
      )[0],
    ).toMatchObject({ metric: HISTOGRAMS.busLag, value: 0.003 })
    // A sender whose clock runs ahead gives no negative lag.
    expect(
      observationsOf(
        done({ operation: 'bus.receive', cache: 'shop', operations: [], sentAt: 2000, receivedAt: 1000 }),
      )[0]!.value,
    ).toBe(0)
    expect(
      observationsOf(
        done({ operation: 'invalidate', kind: 'tags', cache: 'shop', target: ['t'], count: 3 }),
      )[0]!.labels,
    ).toEqual({ cache: 'shop', operation: 'invalidate.tags', layer: 'none', outcome: 'ok' })
    expect(
      observationsOf(
        done({ operation: 'writeBehind.flush', queue: 'orders', received: 3, count: 2, outcome: 'written' }),
      )[0]!.labels,
    ).toEqual({ queue: 'orders', outcome: 'written' })
  })

  it('reads counters, per-layer series and circuit state from a stack', async () => {
    const remote = new RemoteLayer({ name: 'redis' })
    const cache = new CacheStack([new MemoryLayer(), remote], {
      name: 'shop',
      gracefulDegradation: { failureThreshold: 1 },
    })
    await cache.set('a', 1)
    await cache.get('a')
    await cache.get('b')
    remote.fail(['get'])
    await cache.get('c')
    const samples = await stackSamples(cache)
    const value = (name: string, labels: Record<string, string>) =>
      samples.find(
        (s) => s.metric.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value
    expect(value('layercache.hits', { cache: 'shop' })).toBe(1)
    expect(value('layercache.misses', { cache: 'shop' })).toBe(2)
    expect(value('layercache.layer.hits', { layer: 'memory' })).toBe(1)
    expect(value('layercache.layer.errors', { layer: 'redis' })).toBe(1)
    expect(value('layercache.circuit.state', { layer: 'redis' })).toBe(2)
    expect(value('layercache.circuit.state', { layer: 'memory' })).toBeUndefined()
  })

  it('subscribeObservations delivers within 100 ms, at once on flush, and nothing after stop', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RemoteLayer()], { name: 'obs' })
    const seen: string[] = []
    const subscription = subscribeObservations((o) => seen.push(`${o.metric.name} ${o.labels.outcome}`))
    // The remote double answers in microtasks: no macrotask ran, so the observations are still queued.
    await cache.getOrSet('k', () => 1)
    await cache.get('k')
    expect(seen).toEqual([])
    subscription.flush()
    expect(seen).toEqual(['layercache.loader.duration ok', 'layercache.operation.duration loaded'])
    await cache.get('missing')
    await expect.poll(() => seen.length, { interval: 20 }).toBe(3)
    await cache.get('queued')
    subscription.stop() // flushes what was queued
    expect(seen).toHaveLength(4)
    await cache.get('after')
    subscription.flush() // unsubscribed: the call after stop queued nothing
    expect(seen).toHaveLength(4)
  })

  it('reads a write-behind queue', () => {
    const samples = writeBehindSamples({
      queue: 'orders',
      stats: () => ({ depth: 4, written: 10, retries: 2, deadLettered: 1 }),
    })
    expect(samples.map((s) => [s.metric.name, s.value, s.labels.queue])).toEqual([
      ['layercache.write_behind.queue_depth', 4, 'orders'],
      ['layercache.write_behind.written', 10, 'orders'],
      ['layercache.write_behind.retries', 2, 'orders'],
      ['layercache.write_behind.dead_letters', 1, 'orders'],
    ])
  })
})
