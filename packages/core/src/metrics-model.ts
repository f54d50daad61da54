import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { CacheStack } from './cache-stack'
import type { CircuitState } from './circuit-breaker'
import { type OperationDone, PLAIN_CHANNELS } from './diagnostics'
import type { CacheStats } from './stats'

/**
 * The metrics layercache exports, defined once: @layercache/opentelemetry and @layercache/prometheus both
 * build their instruments from these definitions, decode `operation.done` with `observationsOf`, and
 * read counters and gauges with `stackSamples` / `writeBehindSamples`. Names are OpenTelemetry-style
 * (dotted); Prometheus gets `prometheusName` (underscores, `_seconds`, `_total`).
 */

export type MetricKind = 'counter' | 'gauge' | 'histogram'

export interface MetricDefinition {
  readonly name: string
  readonly kind: MetricKind
  /** UCUM-style unit, as OpenTelemetry wants it. */
  readonly unit: 's' | '1' | '{call}' | '{entry}' | '{key}' | '{message}' | '{flush}' | '{state}'
  readonly description: string
  readonly labels: readonly string[]
}

const histogram = (name: string, description: string, labels: readonly string[]): MetricDefinition => ({
  name,
  kind: 'histogram',
  unit: 's',
  description,
  labels,
})
const counter = (
  name: string,
  unit: MetricDefinition['unit'],
  description: string,
  labels: readonly string[] = ['cache'],
): MetricDefinition => ({ name, kind: 'counter', unit, description, labels })
const gauge = (
  name: string,
  unit: MetricDefinition['unit'],
  description: string,
  labels: readonly string[],
): MetricDefinition => ({ name, kind: 'gauge', unit, description, labels })

/** Histograms, fed by `operation.done` (one observation per call that went past memory). */
export const HISTOGRAMS = {
  operation: histogram(
    'layercache.operation.duration',
    'Duration of cache calls that went past the in-process layer, by operation, the layer that answered and outcome',
    ['cache', 'operation', 'layer', 'outcome'],
  ),
  loader: histogram(
    'layercache.loader.duration',
    'Duration of loader runs, by what triggered the load and whether the loader succeeded',
    ['cache', 'trigger', 'outcome'],
  ),
  busLag: histogram(
    'layercache.bus.lag',
    "Time from a peer sending an invalidation to this instance applying it (two hosts' wall clocks)",
    ['cache'],
  ),
  flush: histogram(
    'layercache.write_behind.flush.duration',
    'Duration of write-behind batches handed to the writer, by outcome',
    ['queue', 'outcome'],
  ),
} as const

/** Counters and gauges, read from a stack's getStats() (and index sizes) when the exporter collects. */
export const STACK_METRICS = {
  hits: counter('layercache.hits', '{call}', 'Reads answered by some layer'),
  misses: counter('layercache.misses', '{call}', 'Reads no layer could answer'),
  layerHits: counter('layercache.layer.hits', '{call}', 'Reads answered by this layer', ['cache', 'layer']),
  layerMisses: counter('layercache.layer.misses', '{call}', 'Reads this layer could not answer', [
    'cache',
    'layer',
  ]),
  layerErrors: counter('layercache.layer.errors', '{call}', 'Calls this layer failed', ['cache', 'layer']),
  loaderCalls: counter('layercache.loader.calls', '{call}', 'Loader runs'),
  loaderErrors: counter('layercache.loader.errors', '{call}', 'Loader runs that threw or timed out hard'),
  coalesced: counter(
    'layercache.coalesced',
    '{call}',
    'getOrSet calls that joined a load in flight instead of running the loader',
  ),
  staleServed: counter('layercache.stale_served', '{call}', 'Stale values served, by why', [
    'cache',
    'reason',
  ]),
  fencedWrites: counter(
    'layercache.fenced_writes',
    '{entry}',
    'Write-backs refused because the key was invalidated while it was read or loaded',
  ),
  backgroundRefreshes: counter('layercache.background_refreshes', '{call}', 'Background refreshes started'),
  sets: counter('layercache.sets', '{entry}', 'Entries written by set and mset'),
  deletes: counter('layercache.deletes', '{key}', 'Keys deleted'),
  invalidations: counter('layercache.invalidations', '{call}', 'Group invalidations (tag, prefix, pattern)'),
  expirations: counter(
    'layercache.expirations',
    '{call}',
    'Soft invalidations (expire, expireByTag, expireByPrefix)',
  ),
  corruptEntries: counter('layercache.corrupt_entries', '{entry}', 'Entries a layer held but could not use'),
  skippedWrites: counter('layercache.skipped_writes', '{entry}', 'Writes a failing layer did not take'),
  circuitOpens: counter('layercache.circuit.opens', '{state}', 'Times a circuit breaker opened'),
  busPublished: counter('layercache.bus.published', '{message}', 'Invalidation messages sent'),
  busPublishErrors: counter(
    'layercache.bus.publish_errors',
    '{message}',
    'Invalidations applied to the shared layers but not announced on the bus',
  ),
  peerInvalidations: counter(
    'layercache.bus.peer_invalidations',
    '{message}',
    "Other instances' invalidations applied here",
  ),
  unverifiedFlushes: counter(
    'layercache.bus.unverified_flushes',
    '{flush}',
    'In-process layers flushed because bus messages may have been missed',
  ),
  leasesLost: counter(
    'layercache.coordinator.leases_lost',
    '{call}',
    'Loads that finished after losing their fleet-wide lease',
  ),
  circuitState: gauge(
    'layercache.circuit.state',
    '{state}',
    'Circuit breaker of a remote layer: 0 closed, 1 half-open, 2 open',
    ['cache', 'layer'],
  ),
  keyIndexSize: gauge('layercache.key_index.size', '{key}', "Keys in a Redis layer's key index", [
    'cache',
    'layer',
  ]),
} as const

/** Counters and gauges of a WriteBehind queue (@layercache/write-strategies). */
export const WRITE_BEHIND_METRICS = {
  depth: gauge(
    'layercache.write_behind.queue_depth',
    '{entry}',
    'Entries waiting in the queue (as of the last consumer round)',
    ['queue'],
  ),
  written: counter('layercache.write_behind.written', '{entry}', 'Entries the writer stored', ['queue']),
  retries: counter('layercache.write_behind.retries', '{entry}', 'Entries scheduled for another attempt', [
    'queue',
  ]),
  deadLettered: counter(
    'layercache.write_behind.dead_letters',
    '{entry}',
    'Entries moved to the dead-letter stream after their last attempt',
    ['queue'],
  ),
} as const

/** Every metric, for exporters that register all of them up front. */
export const ALL_METRICS: readonly MetricDefinition[] = [
  ...Object.values(HISTOGRAMS),
  ...Object.values(STACK_METRICS),
  ...Object.values(WRITE_BEHIND_METRICS),
]

/** `layercache.operation.duration` → `layercache_operation_duration_seconds`; counters end in `_total`. */
export function prometheusName(definition: MetricDefinition): string {
  const base = definition.name.replace(/\./g, '_')
  if (definition.unit === 's') return `${base}_seconds`
  return definition.kind === 'counter' ? `${base}_total` : base
}

export type Labels = Readonly<Record<string, string>>

export interface Observation {
  readonly metric: MetricDefinition
  /** Seconds. */
  readonly value: number
  readonly labels: Labels
}

export interface Sample {
  readonly metric: MetricDefinition
  readonly value: number
  readonly labels: Labels
}

/** What an `operation.done` message adds to the histograms (none for an unknown context). */
export function observationsOf(done: OperationDone): Observation[] {
  const context = done.context
  const seconds = done.durationMs / 1000
  switch (context.operation) {
    case 'load': {
      if (!context.loaded) return []
      const ms = context.loaderMs ?? done.durationMs
      const outcome = context.loaderError === undefined ? 'ok' : 'error'
      const labels = { cache: context.cache, trigger: context.trigger, outcome }
      return [{ metric: HISTOGRAMS.loader, value: ms / 1000, labels }]
    }
    case 'bus.receive': {
      if (context.sentAt === undefined || context.receivedAt === undefined) return []
      const lag = Math.max(0, context.receivedAt - context.sentAt) / 1000
      return [{ metric: HISTOGRAMS.busLag, value: lag, labels: { cache: context.cache } }]
    }
    case 'writeBehind.flush': {
      const labels = { queue: context.queue, outcome: context.outcome ?? 'error' }
      return [{ metric: HISTOGRAMS.flush, value: seconds, labels }]
    }
    case 'invalidate': {
      const outcome = done.error === undefined ? 'ok' : 'error'
      const labels = { cache: context.cache, operation: `invalidate.${context.kind}`, layer: 'none', outcome }
      return [{ metric: HISTOGRAMS.operation, value: seconds, labels }]
    }
    case 'bus.publish': {
      const labels = {
        cache: context.cache,
        operation: 'bus.publish',
        layer: 'none',
        outcome: done.error === undefined ? 'ok' : 'error',
      }
      return [{ metric: HISTOGRAMS.operation, value: seconds, labels }]
    }
    default: {
      const labels = {
        cache: context.cache,
        operation: context.operation,
        layer: context.layer ?? 'none',
        outcome: operationOutcome(context, done.error),
      }
      return [{ metric: HISTOGRAMS.operation, value: seconds, labels }]
    }
  }
}

/** One word for how a cache call ended, the `outcome` label. */
function operationOutcome(
  context: Extract<OperationDone['context'], { keyCount: number }>,
  error: unknown,
): string {
  if (error !== undefined) return 'error'
  if (context.coalesced) return 'coalesced'
  if (context.stale !== undefined) return 'stale'
  if (context.loaded) return 'loaded'
  if (context.operation === 'get' || context.operation === 'getOrSet' || context.operation === 'mget') {
    return context.hit ? 'hit' : 'miss'
  }
  return 'ok'
}

/** A subscription to the histogram observations (see subscribeObservations). */
export interface ObservationSubscription {
  /** Hands every observation still waiting to `observe` now (an exporter calls it when it collects). */
  flush(): void
  /** Flushes, then unsubscribes. */
  stop(): void
}

/** Observations waiting past this many are handed over at once. */
const MAX_PENDING = 10_000
/** How long observations may wait before they are handed over (an exporter's collection takes them first). */
const FLUSH_EVERY_MS = 100

/**
 * Subscribes `observe` to every histogram observation (`operation.done`). What both exporters share of the
 * channel side. A call only queues its message: decoding and the exporter's record (an SDK histogram
 * costs microseconds per record) run in one batch at most FLUSH_EVERY_MS later, off the caller's path, and
 * at once when the exporter collects (`flush`), so a scrape still sees every call made before it.
 */
export function subscribeObservations(observe: (observation: Observation) => void): ObservationSubscription {
  let pending: OperationDone[] = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    const batch = pending
    pending = []
    for (const done of batch) for (const observation of observationsOf(done)) observe(observation)
  }
  const listener = (message: unknown) => {
    pending.push(message as OperationDone)
    if (pending.length >= MAX_PENDING) flush()
    else if (!scheduled) {
      scheduled = true
      setTimeout(flush, FLUSH_EVERY_MS).unref()
    }
  }
  subscribe(PLAIN_CHANNELS.operationDone, listener)
  return {
    flush,
    stop() {
      unsubscribe(PLAIN_CHANNELS.operationDone, listener)
      flush()
    },
  }
}

const CIRCUIT_VALUES: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 }

/** A stack's counters and gauges now (its name is the `cache` label). */
export function statsSamples(cache: string, stats: CacheStats): Sample[] {
  const m = STACK_METRICS
  const one = (metric: MetricDefinition, value: number): Sample => ({ metric, value, labels: { cache } })
  const staleRevalidate = stats.staleServed - stats.staleOnError - stats.staleOnTimeout
  const samples: Sample[] = [
    one(m.hits, stats.hits),
    one(m.misses, stats.misses),
    one(m.loaderCalls, stats.loaderCalls),
    one(m.loaderErrors, stats.loaderErrors),
    one(m.coalesced, stats.coalesced),
    { metric: m.staleServed, value: staleRevalidate, labels: { cache, reason: 'revalidate' } },
    { metric: m.staleServed, value: stats.staleOnError, labels: { cache, reason: 'error' } },
    { metric: m.staleServed, value: stats.staleOnTimeout, labels: { cache, reason: 'timeout' } },
    one(m.fencedWrites, stats.fencedWrites),
    one(m.backgroundRefreshes, stats.backgroundRefreshes),
    one(m.sets, stats.sets),
    one(m.deletes, stats.deletes),
    one(m.invalidations, stats.invalidations),
    one(m.expirations, stats.expirations),
    one(m.corruptEntries, stats.corruptEntries),
    one(m.skippedWrites, stats.skippedWrites),
    one(m.circuitOpens, stats.circuitOpens),
    one(m.busPublished, stats.busPublished),
    one(m.busPublishErrors, stats.busPublishErrors),
    one(m.peerInvalidations, stats.peerInvalidations),
    one(m.unverifiedFlushes, stats.unverifiedFlushes),
    one(m.leasesLost, stats.leasesLost),
  ]
  for (const layer of stats.layers) {
    const labels = { cache, layer: layer.name }
    samples.push(
      { metric: m.layerHits, value: layer.hits, labels },
      { metric: m.layerMisses, value: layer.misses, labels },
      { metric: m.layerErrors, value: layer.errors, labels },
    )
    if (layer.circuit !== undefined) {
      samples.push({ metric: m.circuitState, value: CIRCUIT_VALUES[layer.circuit], labels })
    }
  }
  return samples
}

/**
 * A stack's counters and gauges, with the key-index size of each layer that has one (one ZCARD per index
 * shard; a layer that cannot answer now is left out of this collection rather than failing it).
 */
export async function stackSamples(stack: CacheStack): Promise<Sample[]> {
  const samples = statsSamples(stack.name, stack.getStats())
  const indexed = stack.layers.filter(
    (layer): layer is typeof layer & { keyIndexSize(): Promise<number> } =>
      typeof (layer as { keyIndexSize?: unknown }).keyIndexSize === 'function',
  )
  const sizes = await Promise.all(indexed.map((layer) => layer.keyIndexSize().catch(() => undefined)))
  sizes.forEach((size, i) => {
    if (size === undefined) return
    const labels = { cache: stack.name, layer: indexed[i]!.name }
    samples.push({ metric: STACK_METRICS.keyIndexSize, value: size, labels })
  })
  return samples
}

/** What the metrics read of a WriteBehind (structural, so core does not depend on write-strategies). */
export interface ObservableQueue {
  readonly queue: string
  stats(): {
    readonly depth: number
    readonly written: number
    readonly retries: number
    readonly deadLettered: number
  }
}

export function writeBehindSamples(queue: ObservableQueue): Sample[] {
  const stats = queue.stats()
  const labels = { queue: queue.queue }
  const m = WRITE_BEHIND_METRICS
  return [
    { metric: m.depth, value: stats.depth, labels },
    { metric: m.written, value: stats.written, labels },
    { metric: m.retries, value: stats.retries, labels },
    { metric: m.deadLettered, value: stats.deadLettered, labels },
  ]
}
