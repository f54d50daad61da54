import { type CacheStack, HISTOGRAMS, InvalidOptionError, type ObservableQueue } from '@layercache/core'
import { type Registry, register } from 'prom-client'

/** Which histogram a bucket list is for: the keys of core's HISTOGRAMS. */
export type HistogramName = keyof typeof HISTOGRAMS

/**
 * Bucket upper bounds in seconds, for every histogram (an array) or per histogram (an object; the others
 * keep {@link DEFAULT_BUCKETS}).
 */
export type BucketsOption = readonly number[] | Partial<Record<HistogramName, readonly number[]>>

export interface LayercacheMetricsOptions {
  /**
   * The registry the metrics go into. Default: prom-client's global `register`, the one
   * `collectDefaultMetrics()` and most `/metrics` handlers use. Pass your own to keep them apart.
   */
  readonly registry?: Registry
  /** Histogram bucket bounds, in seconds. Default {@link DEFAULT_BUCKETS}. */
  readonly buckets?: BucketsOption
  /** Stacks whose counters and gauges are read at each scrape, as if passed to `observe()`. */
  readonly stacks?: readonly CacheStack[]
  /** WriteBehind queues (@layercache/write-strategies) read at each scrape, as `observeWriteBehind()`. */
  readonly writeBehinds?: readonly ObservableQueue[]
}

/**
 * Seconds, from 100 µs: what goes past memory is a Redis round trip (sub-millisecond on a LAN) or a
 * loader (milliseconds to seconds), and bus lag is milliseconds; prom-client's default starts at 5 ms,
 * where every Redis hit would land in the first bucket.
 */
export const DEFAULT_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
])

const OPTION_NAMES = ['registry', 'buckets', 'stacks', 'writeBehinds'] as const
const HISTOGRAM_NAMES = Object.keys(HISTOGRAMS) as HistogramName[]

export interface ResolvedOptions {
  readonly registry: Registry
  readonly buckets: Readonly<Record<HistogramName, number[]>>
  readonly stacks: readonly CacheStack[]
  readonly writeBehinds: readonly ObservableQueue[]
}

const fail = (message: string): never => {
  throw new InvalidOptionError(`registerLayercacheMetrics: ${message}`)
}

/** Checks every option before anything is registered, so a bad one leaves the registry untouched. */
export function resolveOptions(options: LayercacheMetricsOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {}
  if (options === null || typeof options !== 'object') fail('options must be an object')
  for (const key of Object.keys(options)) {
    if (!(OPTION_NAMES as readonly string[]).includes(key)) {
      fail(`unknown option "${key}" (known: ${OPTION_NAMES.join(', ')})`)
    }
  }
  const registry = options.registry ?? register
  if (!isRegistry(registry)) fail('registry must be a prom-client Registry')
  const stacks = readList(options.stacks, 'stacks', isStack)
  const writeBehinds = readList(options.writeBehinds, 'writeBehinds', isQueue)
  return { registry, buckets: readBuckets(options.buckets), stacks, writeBehinds }
}

function isRegistry(value: unknown): value is Registry {
  const candidate = value as Partial<Registry> | null
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.registerMetric === 'function' &&
    typeof candidate.getSingleMetric === 'function' &&
    typeof candidate.removeSingleMetric === 'function'
  )
}

/** Structural, like core's ObservableQueue: a stack from another copy of core still counts. */
export function isStack(value: unknown): value is CacheStack {
  const candidate = value as Partial<CacheStack> | null
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.getStats === 'function' &&
    typeof candidate.name === 'string' &&
    Array.isArray(candidate.layers)
  )
}

export function isQueue(value: unknown): value is ObservableQueue {
  const candidate = value as Partial<ObservableQueue> | null
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.queue === 'string' &&
    typeof candidate.stats === 'function'
  )
}

function readList<T>(value: unknown, name: string, accept: (item: unknown) => item is T): readonly T[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) return fail(`${name} must be an array`)
  value.forEach((item, i) => {
    if (!accept(item)) fail(`${name}[${i}] is not a ${name === 'stacks' ? 'CacheStack' : 'WriteBehind'}`)
  })
  return value as T[]
}

function readBuckets(value: BucketsOption | undefined): Record<HistogramName, number[]> {
  const chosen = Object.fromEntries(HISTOGRAM_NAMES.map((name) => [name, [...DEFAULT_BUCKETS]])) as Record<
    HistogramName,
    number[]
  >
  if (value === undefined) return chosen
  if (Array.isArray(value)) {
    const list = readBucketList(value, 'buckets')
    for (const name of HISTOGRAM_NAMES) chosen[name] = list
    return chosen
  }
  if (typeof value !== 'object' || value === null) return fail('buckets must be an array or an object')
  for (const [name, list] of Object.entries(value)) {
    if (!(HISTOGRAM_NAMES as string[]).includes(name)) {
      fail(`buckets.${name} names no histogram (known: ${HISTOGRAM_NAMES.join(', ')})`)
    }
    chosen[name as HistogramName] = readBucketList(list, `buckets.${name}`)
  }
  return chosen
}

function readBucketList(value: unknown, name: string): number[] {
  if (!Array.isArray(value) || value.length === 0) return fail(`${name} must be a non-empty array of seconds`)
  value.forEach((bound, i) => {
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound <= 0) {
      fail(`${name}[${i}] must be a positive finite number of seconds, got ${String(bound)}`)
    }
    if (i > 0 && bound <= value[i - 1]) fail(`${name} must be strictly increasing (at index ${i})`)
  })
  return [...value]
}
