/**
 * @layercache/opentelemetry against the real OpenTelemetry SDK (in-memory span exporter, a manual metric
 * reader) and a real Redis: spans carry what explains each result and nest under the caller's span;
 * metrics move with traffic; stop() leaves nothing subscribed.
 */
import { tracingChannel } from 'node:diagnostics_channel'
import { CacheStack, InvalidKeyError, InvalidOptionError, TRACING_CHANNELS } from '@layercache/core'
import { RedisInvalidationBus } from '@layercache/distributed'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { WriteBehind } from '@layercache/write-strategies'
import { context, SpanStatusCode, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { instrumentLayercache, type LayercacheInstrumentation } from '../src'

/** Collects on demand (no timer). */
class ManualReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

let redis: TestRedis
let client: Redis
let run = 0
const contextManager = new AsyncLocalStorageContextManager()
beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  context.setGlobalContextManager(contextManager.enable())
})
afterAll(async () => {
  context.disable()
  await redis.close()
})

const stops: (() => unknown)[] = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

function setup(options: { name?: string; recordKeys?: boolean } = {}) {
  run++
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const reader = new ManualReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  const prefix = `${redis.keyPrefix}otel${run}`
  const cache = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix })], {
    name: options.name ?? `shop${run}`,
  })
  const instrumentation = instrumentLayercache({
    tracerProvider,
    meterProvider,
    stacks: [cache],
    ...(options.recordKeys === undefined ? {} : { recordKeys: options.recordKeys }),
  })
  stops.push(
    () => instrumentation.stop(),
    () => meterProvider.shutdown(),
    () => tracerProvider.shutdown(),
  )
  const spans = () => exporter.getFinishedSpans()
  const named = (name: string) => spans().filter((span) => span.name === name)
  const collect = async () => (await reader.collect()).resourceMetrics
  return { cache, instrumentation, spans, named, collect, prefix, tracerProvider, meterProvider }
}

/** The data points of one metric, across scopes. */
function points(metrics: ResourceMetrics, name: string): DataPoint<number | Histogram>[] {
  return metrics.scopeMetrics.flatMap((scope) =>
    scope.metrics
      .filter((metric) => metric.descriptor.name === name)
      .flatMap((metric) => metric.dataPoints as readonly DataPoint<unknown>[]),
  ) as unknown as DataPoint<number | Histogram>[]
}

function value(
  metrics: ResourceMetrics,
  name: string,
  attributes: Record<string, string>,
): number | undefined {
  const point = points(metrics, name).find((p) =>
    Object.entries(attributes).every(([key, wanted]) => p.attributes[key] === wanted),
  )
  if (point === undefined) return undefined
  return typeof point.value === 'number' ? point.value : (point.value as Histogram).count
}

const attr = (span: ReadableSpan, name: string) => span.attributes[`layercache.${name}`]

describe('spans', () => {
  it('a memory hit, a Redis hit and a miss each name the layer that answered', async () => {
    const { cache, named } = setup()
    await cache.set('m', 1)
    await client.set('unrelated', 'x') // the same Redis; nothing of ours
    const other = new CacheStack([new RedisLayer({ client, prefix: `${redis.keyPrefix}otel${run}` })])
    await other.set('r', 2)
    expect(await cache.get('m')).toBe(1)
    expect(await cache.get('r')).toBe(2)
    expect(await cache.get('none')).toBeUndefined()
    const gets = named('layercache.get').filter((span) => attr(span, 'cache') === cache.name)
    expect(gets.map((span) => [attr(span, 'key'), attr(span, 'layer'), attr(span, 'hit')])).toEqual([
      ['m', 'memory', true],
      ['r', 'redis', true],
      ['none', undefined, false],
    ])
    const set = named('layercache.set').find((span) => attr(span, 'cache') === cache.name)!
    expect(attr(set, 'key')).toBe('m')
  })

  it("getOrSet nests under the caller's span and its load under it; the loader's result is reported", async () => {
    const { cache, named, tracerProvider } = setup()
    const tracer = tracerProvider.getTracer('test')
    const root = tracer.startSpan('request')
    const loaded = await context.with(trace.setSpan(context.active(), root), () =>
      cache.getOrSet('product:1', async () => ({ id: 1 }), { tags: ['products'] }),
    )
    root.end()
    expect(loaded).toEqual({ id: 1 })
    const call = named('layercache.getOrSet')[0]!
    const load = named('layercache.load')[0]!
    expect(call.parentSpanContext?.spanId).toBe(root.spanContext().spanId)
    expect(load.parentSpanContext?.spanId).toBe(call.spanContext().spanId)
    expect(call.spanContext().traceId).toBe(root.spanContext().traceId)
    expect(attr(call, 'loaded')).toBe(true)
    expect(attr(load, 'load.trigger')).toBe('miss')
    expect(attr(load, 'write_back')).toBe('written')
    expect(attr(load, 'loader_ms')).toEqual(expect.any(Number))
  })

  it('coalesced callers and a fenced write-back are visible on the span', async () => {
    const { cache, named } = setup()
    let release!: (value: string) => void
    const first = cache.getOrSet('k', () => new Promise<string>((resolve) => (release = resolve)))
    const second = cache.getOrSet('k', () => 'never')
    await expect.poll(() => release !== undefined).toBe(true)
    await cache.delete('k') // lands while the load runs: its write-back must be refused
    release('v')
    expect(await Promise.all([first, second])).toEqual(['v', 'v'])
    const calls = named('layercache.getOrSet')
    expect(calls.find((span) => attr(span, 'coalesced') === true)).toBeDefined()
    expect(calls.find((span) => attr(span, 'fenced') === true)).toBeDefined()
    expect(attr(named('layercache.load')[0]!, 'write_back')).toBe('fenced')
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a rejected call has an error status and the exception recorded', async () => {
    const { cache, named } = setup()
    await expect(cache.get('')).rejects.toThrow(InvalidKeyError)
    const span = named('layercache.get')[0]!
    expect(span.status.code).toBe(SpanStatusCode.ERROR)
    expect(span.events.map((event) => event.name)).toContain('exception')
  })

  it('recordKeys: false keeps keys and invalidation targets off the spans', async () => {
    const { cache, named } = setup({ recordKeys: false })
    await cache.set('user:42:email', 'a@b.c', { tags: ['user:42'] })
    await cache.invalidateByTag('user:42')
    for (const span of [...named('layercache.set'), ...named('layercache.invalidate')]) {
      expect(attr(span, 'key')).toBeUndefined()
      expect(attr(span, 'invalidation.targets')).toBeUndefined()
    }
    expect(attr(named('layercache.invalidate')[0]!, 'invalidation.count')).toBe(1)
  })

  it('the bus: a publish here and the peer applying it, with the lag', async () => {
    const { cache: _unused, named } = setup()
    const channel = `${redis.keyPrefix}bus${run}`
    const stacks: CacheStack[] = []
    for (const name of ['writer', 'peer']) {
      const subscriber = redis.createClient()
      const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel })
      await bus.ready
      stops.push(() => bus.close())
      stacks.push(
        new CacheStack(
          [new MemoryLayer(), new RedisLayer({ client, prefix: `${redis.keyPrefix}bus${run}` })],
          {
            name,
            invalidationBus: bus,
          },
        ),
      )
    }
    const [writer, peer] = stacks as [CacheStack, CacheStack]
    await writer.set('k', 1)
    expect(await peer.get('k')).toBe(1)
    await writer.delete('k')
    await expect.poll(() => named('layercache.bus.receive').length).toBeGreaterThan(0)
    const published = named('layercache.bus.publish').find((span) => attr(span, 'cache') === 'writer')!
    const received = named('layercache.bus.receive').find((span) => attr(span, 'cache') === 'peer')!
    expect(attr(published, 'bus.operations')).toBe(1)
    expect(attr(received, 'bus.lag_ms')).toEqual(expect.any(Number))
    expect(await peer.get('k')).toBeUndefined()
  })
})

describe('metrics', () => {
  it('hits per layer, misses, operation and loader histograms move with traffic', async () => {
    const { cache, collect } = setup()
    const labels = { cache: cache.name }
    await cache.getOrSet('a', () => 'A') // loader
    await cache.get('a') // memory hit: counted, not timed
    await cache.get('nope') // miss past memory: timed
    const metrics = await collect()
    expect(value(metrics, 'layercache.hits', labels)).toBe(1)
    expect(value(metrics, 'layercache.misses', labels)).toBe(2)
    expect(value(metrics, 'layercache.layer.hits', { ...labels, layer: 'memory' })).toBe(1)
    expect(value(metrics, 'layercache.layer.misses', { ...labels, layer: 'redis' })).toBe(2)
    expect(value(metrics, 'layercache.loader.calls', labels)).toBe(1)
    expect(value(metrics, 'layercache.loader.duration', { ...labels, trigger: 'miss', outcome: 'ok' })).toBe(
      1,
    )
    expect(
      value(metrics, 'layercache.operation.duration', {
        ...labels,
        operation: 'getOrSet',
        outcome: 'loaded',
      }),
    ).toBe(1)
    expect(
      value(metrics, 'layercache.operation.duration', {
        ...labels,
        operation: 'get',
        layer: 'none',
        outcome: 'miss',
      }),
    ).toBe(1)
    expect(
      value(metrics, 'layercache.operation.duration', { ...labels, operation: 'get', outcome: 'hit' }),
    ).toBe(undefined)
    expect(value(metrics, 'layercache.key_index.size', { ...labels, layer: 'redis' })).toBe(1)
    // Later traffic moves the same series.
    await cache.set('b', 'B')
    const later = await collect()
    expect(value(later, 'layercache.key_index.size', { ...labels, layer: 'redis' })).toBe(2)
    expect(value(later, 'layercache.sets', labels)).toBe(1)
  })

  it('stale answers by reason, coalesced callers and fenced write-backs are counted', async () => {
    const { cache, collect } = setup()
    const labels = { cache: cache.name }
    await cache.getOrSet('s', () => 'old', { ttl: 20, staleIfError: 60_000 })
    await expect.poll(async () => (await cache.get('s')) === undefined).toBe(true)
    const stale = await cache.getOrSet(
      's',
      () => {
        throw new Error('database down')
      },
      { ttl: 20, staleIfError: 60_000 },
    )
    expect(stale).toBe('old')
    let release!: (value: string) => void
    const first = cache.getOrSet('k', () => new Promise<string>((resolve) => (release = resolve)))
    const second = cache.getOrSet('k', () => 'never')
    await expect.poll(() => release !== undefined).toBe(true)
    await cache.delete('k')
    release('v')
    await Promise.all([first, second])
    const metrics = await collect()
    expect(value(metrics, 'layercache.stale_served', { ...labels, reason: 'error' })).toBe(1)
    expect(value(metrics, 'layercache.loader.errors', labels)).toBe(1)
    expect(value(metrics, 'layercache.coalesced', labels)).toBe(1)
    expect(value(metrics, 'layercache.fenced_writes', labels)).toBe(1)
    expect(value(metrics, 'layercache.loader.duration', { ...labels, outcome: 'error' })).toBe(1)
  })

  it('a write-behind queue reports its depth, retries and dead letters', async () => {
    const { cache, instrumentation, collect } = setup()
    const queue = new WriteBehind<string>({
      cache,
      client,
      queue: `${redis.keyPrefix}wbq${run}`,
      writer: async () => {
        throw new Error('database refuses')
      },
      maxAttempts: 2,
      retryDelayMs: 1,
      pollIntervalMs: 5,
    })
    stops.push(() => queue.close({ drain: false }))
    instrumentation.observeWriteBehind(queue)
    await queue.write('order:1', 'paid')
    queue.start()
    await expect.poll(() => queue.stats().deadLettered, { timeout: 10_000 }).toBe(1)
    const metrics = await collect()
    const labels = { queue: queue.queue }
    expect(value(metrics, 'layercache.write_behind.dead_letters', labels)).toBe(1)
    expect(value(metrics, 'layercache.write_behind.retries', labels)).toBe(1)
    expect(value(metrics, 'layercache.write_behind.queue_depth', labels)).toEqual(expect.any(Number))
    expect(value(metrics, 'layercache.write_behind.flush.duration', { ...labels, outcome: 'failed' })).toBe(2)
  })

  it('observe() returns the function that stops reporting that stack', async () => {
    const { cache, instrumentation, collect } = setup()
    const second = new CacheStack([new MemoryLayer()], { name: `second${run}` })
    const unobserve = instrumentation.observe(second)
    await second.set('x', 1)
    expect(value(await collect(), 'layercache.sets', { cache: second.name })).toBe(1)
    unobserve()
    await second.set('y', 2)
    await cache.set('z', 3)
    const later = await collect()
    // The SDK may keep reporting the last value it saw; it no longer moves.
    expect(value(later, 'layercache.sets', { cache: second.name }) ?? 1).toBe(1)
    expect(value(later, 'layercache.sets', { cache: cache.name })).toBe(1)
  })
})

describe('lifecycle and options', () => {
  it('stop() unsubscribes everything: channels have no subscribers again, and stop is idempotent', () => {
    const instrumentation: LayercacheInstrumentation = instrumentLayercache({
      tracerProvider: new BasicTracerProvider(),
      meterProvider: new MeterProvider(),
    })
    const subscribed = () =>
      Object.values(TRACING_CHANNELS).some(
        (name) => (tracingChannel(name) as unknown as { hasSubscribers: boolean }).hasSubscribers,
      )
    expect(subscribed()).toBe(true)
    instrumentation.stop()
    instrumentation.stop()
    expect(subscribed()).toBe(false)
    expect(() => instrumentation.observe(new CacheStack([new MemoryLayer()]))).toThrow(InvalidOptionError)
  })

  it('bad options are refused with InvalidOptionError and subscribe nothing', () => {
    const bad: unknown[] = [
      { traces: 'yes' },
      { buckets: [0.1, 0.05] },
      { buckets: [] },
      { stacks: [{}] },
      { stacks: [new CacheStack([new MemoryLayer()])], metrics: false },
      { colour: 'blue' },
    ]
    for (const options of bad) {
      expect(() => instrumentLayercache(options as never)).toThrow(InvalidOptionError)
    }
    expect(
      Object.values(TRACING_CHANNELS).some(
        (name) => (tracingChannel(name) as unknown as { hasSubscribers: boolean }).hasSubscribers,
      ),
    ).toBe(false)
    const tracesOnly = instrumentLayercache({ tracerProvider: new BasicTracerProvider(), metrics: false })
    expect(() => tracesOnly.observe(new CacheStack([new MemoryLayer()]))).toThrow(InvalidOptionError)
    tracesOnly.stop()
  })
})
