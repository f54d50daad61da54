import {
  assertKnownOptions,
  type CacheStack,
  InvalidOptionError,
  type ObservableQueue,
} from '@layercache/core'
import { type MeterProvider, metrics, type TracerProvider, trace } from '@opentelemetry/api'
import { DEFAULT_BUCKETS, MetricsBridge } from './metrics'
import { SpanBridge } from './spans'

/** This package's instrumentation scope (tracer and meter name). */
export const INSTRUMENTATION_NAME = '@layercache/opentelemetry'

export interface LayercacheInstrumentationOptions {
  /** Where spans go. Default: the global provider (`trace.getTracerProvider()`). */
  readonly tracerProvider?: TracerProvider
  /** Where metrics go. Default: the global provider (`metrics.getMeterProvider()`). */
  readonly meterProvider?: MeterProvider
  /** A span per cache call. Default true. */
  readonly traces?: boolean
  /** Histograms, counters and gauges. Default true. */
  readonly metrics?: boolean
  /** Put the stored key on spans (`layercache.key`). Default true; false when keys carry personal data. */
  readonly recordKeys?: boolean
  /** Bucket bounds in seconds of the duration histograms (sorted, increasing). Default DEFAULT_BUCKETS. */
  readonly buckets?: readonly number[]
  /** Stacks whose counters and gauges to report from the start (same as calling observe on each). */
  readonly stacks?: readonly CacheStack[]
  /** WriteBehind queues to report from the start (same as calling observeWriteBehind on each). */
  readonly writeBehinds?: readonly ObservableQueue[]
}

const OPTIONS = [
  'tracerProvider',
  'meterProvider',
  'traces',
  'metrics',
  'recordKeys',
  'buckets',
  'stacks',
  'writeBehinds',
] as const

export interface LayercacheInstrumentation {
  /** Reports this stack's counters and gauges (hits per layer, stale served, circuit state, index size…). */
  observe(stack: CacheStack): () => void
  /** Reports a WriteBehind's queue depth, retries and dead letters. */
  observeWriteBehind(queue: ObservableQueue): () => void
  /** Stops every span and metric this instrumentation produces. Idempotent. */
  stop(): void
}

/**
 * Starts reporting layercache's traces and metrics through `@opentelemetry/api`: spans from every cache
 * call of every stack in the process (they come through node:diagnostics_channel), histograms of the calls
 * that went past memory, and the counters and gauges of the stacks and queues you observe. You bring and
 * configure the SDK.
 */
export function instrumentLayercache(
  options: LayercacheInstrumentationOptions = {},
): LayercacheInstrumentation {
  assertKnownOptions(options, OPTIONS, 'instrumentLayercache')
  const flag = (value: unknown, name: string): boolean => {
    if (value === undefined) return true
    if (typeof value !== 'boolean')
      throw new InvalidOptionError(`instrumentLayercache: ${name} must be a boolean`)
    return value
  }
  const traces = flag(options.traces, 'traces')
  const measured = flag(options.metrics, 'metrics')
  const recordKeys = flag(options.recordKeys, 'recordKeys')
  const buckets = readBuckets(options.buckets)
  const stacks = readList<CacheStack>(
    options.stacks,
    'stacks',
    (item) => typeof (item as CacheStack)?.getStats === 'function',
  )
  const queues = readList<ObservableQueue>(
    options.writeBehinds,
    'writeBehinds',
    (item) =>
      typeof (item as ObservableQueue)?.stats === 'function' &&
      typeof (item as ObservableQueue).queue === 'string',
  )
  if (stacks.length + queues.length > 0 && !measured) {
    throw new InvalidOptionError('instrumentLayercache: stacks and writeBehinds need metrics')
  }
  const tracerProvider = options.tracerProvider ?? trace.getTracerProvider()
  const meterProvider = options.meterProvider ?? metrics.getMeterProvider()
  const spans = traces
    ? new SpanBridge(tracerProvider.getTracer(INSTRUMENTATION_NAME), { recordKeys })
    : undefined
  const bridge = measured
    ? new MetricsBridge(meterProvider.getMeter(INSTRUMENTATION_NAME), buckets)
    : undefined
  for (const stack of stacks) bridge!.observe(stack)
  for (const queue of queues) bridge!.observeWriteBehind(queue)
  let stopped = false
  const needsMetrics = (what: string) => {
    if (bridge === undefined)
      throw new InvalidOptionError(`${what} needs metrics (the metrics option is false)`)
    if (stopped) throw new InvalidOptionError(`${what}: this instrumentation was stopped`)
    return bridge
  }
  return {
    observe(stack) {
      if (typeof stack?.getStats !== 'function') throw new InvalidOptionError('observe expects a CacheStack')
      return needsMetrics('observe').observe(stack)
    },
    observeWriteBehind(queue) {
      if (typeof queue?.stats !== 'function')
        throw new InvalidOptionError('observeWriteBehind expects a WriteBehind')
      return needsMetrics('observeWriteBehind').observeWriteBehind(queue)
    },
    stop() {
      if (stopped) return
      stopped = true
      spans?.stop()
      bridge?.stop()
    },
  }
}

function readBuckets(buckets: unknown): readonly number[] {
  if (buckets === undefined) return DEFAULT_BUCKETS
  if (
    !Array.isArray(buckets) ||
    buckets.length === 0 ||
    buckets.some(
      (bound, i) =>
        typeof bound !== 'number' ||
        !Number.isFinite(bound) ||
        bound <= 0 ||
        (i > 0 && bound <= buckets[i - 1]),
    )
  ) {
    throw new InvalidOptionError(
      'instrumentLayercache: buckets must be increasing positive numbers (seconds)',
    )
  }
  return buckets
}

function readList<T>(value: unknown, name: string, valid: (item: unknown) => boolean): readonly T[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every(valid)) {
    throw new InvalidOptionError(
      `instrumentLayercache: ${name} must be an array of ${name === 'stacks' ? 'CacheStack' : 'WriteBehind'}`,
    )
  }
  return value as T[]
}
