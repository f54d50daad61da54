import {
  ALL_METRICS,
  type CacheStack,
  HISTOGRAMS,
  InvalidOperationError,
  InvalidOptionError,
  type MetricDefinition,
  type ObservableQueue,
  type ObservationSubscription,
  prometheusName,
  type Sample,
  stackSamples,
  subscribeObservations,
  writeBehindSamples,
} from '@layercache/core'
import { Counter, Gauge, Histogram, type LabelValues, type Registry } from 'prom-client'
import { MonotonicCounters } from './monotonic'
import {
  type HistogramName,
  isQueue,
  isStack,
  type LayercacheMetricsOptions,
  resolveOptions,
} from './options'

/** What registerLayercacheMetrics returns: the registry it filled, and how to add, drop and stop sources. */
export interface LayercacheMetrics {
  /** The registry the metrics were registered in (the `registry` option, or prom-client's global one). */
  readonly registry: Registry
  /**
   * Reads `stack`'s counters and gauges at every scrape, with its `name` as the `cache` label. Returns the
   * function that stops reading it (its series disappear from the next scrape). Throws InvalidOptionError
   * when another observed stack has the same name: their series would be one, so give each its own `name`
   * (a namespace view shares its parent's stats and name: observe the parent once).
   */
  observe(stack: CacheStack): () => void
  /** The same for a WriteBehind queue (@layercache/write-strategies), labelled by its `queue` name. */
  observeWriteBehind(queue: ObservableQueue): () => void
  /** Unsubscribes from `operation.done`, forgets every source and removes the metrics from the registry. */
  stop(): void
}

type Instrument = Counter | Gauge | Histogram

interface Source {
  readonly read: () => Promise<readonly Sample[]> | readonly Sample[]
  /** Per source, so that a source observed again later starts afresh. */
  readonly counters: MonotonicCounters
}

/** One scrape's samples, by metric name (core's dotted name), counters already made monotonic. */
type Snapshot = Map<string, Array<{ labels: LabelValues<string>; value: number }>>

/**
 * Registers every layercache metric in a prom-client registry. Histograms (call, loader, bus-lag and
 * write-behind flush durations) are fed by the `layercache:operation.done` diagnostics channel, for every
 * stack in the process; counters and gauges are read from the observed stacks and queues when the
 * registry is scraped, so they cost nothing per cache call.
 *
 * Throws InvalidOptionError, having registered nothing, for a bad option, two sources with the same name,
 * or a registry that already holds one of these metric names (registered twice: `stop()` the first).
 */
export function registerLayercacheMetrics(options?: LayercacheMetricsOptions): LayercacheMetrics {
  const resolved = resolveOptions(options)
  const { registry } = resolved
  for (const metric of ALL_METRICS) {
    const name = prometheusName(metric)
    if (registry.getSingleMetric(name) !== undefined) {
      throw new InvalidOptionError(
        `registerLayercacheMetrics: the registry already holds a metric named ${name}. Metrics are registered ` +
          'once per registry: keep the first result (call stop() on it before registering again), or pass another registry.',
      )
    }
  }

  const stacks = new Map<string, { stack: CacheStack; source: Source }>()
  const queues = new Map<string, { queue: ObservableQueue; source: Source }>()
  let stopped = false

  const addStack = (stack: CacheStack): (() => void) => {
    if (!isStack(stack)) throw new InvalidOptionError('observe: expected a CacheStack')
    const name = stack.name
    const taken = stacks.get(name)
    if (taken !== undefined) {
      throw new InvalidOptionError(
        taken.stack === stack
          ? `observe: the stack "${name}" is observed already`
          : `observe: another observed stack is named "${name}"; give each CacheStack its own \`name\` option ` +
              '(it is the cache label: two stacks under one name would write the same series)',
      )
    }
    const entry = { stack, source: { read: () => stackSamples(stack), counters: new MonotonicCounters() } }
    stacks.set(name, entry)
    return () => {
      if (stacks.get(name) === entry) stacks.delete(name)
    }
  }

  const addQueue = (queue: ObservableQueue): (() => void) => {
    if (!isQueue(queue)) throw new InvalidOptionError('observeWriteBehind: expected a WriteBehind')
    const name = queue.queue
    const taken = queues.get(name)
    if (taken !== undefined) {
      throw new InvalidOptionError(
        taken.queue === queue
          ? `observeWriteBehind: the queue "${name}" is observed already`
          : `observeWriteBehind: another observed queue is named "${name}"`,
      )
    }
    const entry = {
      queue,
      source: { read: () => writeBehindSamples(queue), counters: new MonotonicCounters() },
    }
    queues.set(name, entry)
    return () => {
      if (queues.get(name) === entry) queues.delete(name)
    }
  }

  // Sources first: a duplicate among the options fails before anything reaches the registry.
  for (const stack of resolved.stacks) addStack(stack)
  for (const queue of resolved.writeBehinds) addQueue(queue)

  // Every counter and gauge collects from one snapshot per scrape: prom-client calls each metric's
  // collect in the same tick, so the first starts the reads and the others wait on the same promise.
  let pending: Promise<Snapshot> | undefined
  const snapshot = (): Promise<Snapshot> => {
    pending ??= readSources([...stacks.values(), ...queues.values()].map((entry) => entry.source)).finally(
      () => {
        pending = undefined
      },
    )
    return pending
  }

  const instruments = new Map<string, Instrument>()
  const histograms = new Map<string, Histogram>()
  // Calls only queue their observations (see subscribeObservations): a scrape takes them in first.
  let observations: ObservationSubscription | undefined
  for (const [key, metric] of histogramEntries()) {
    const histogram = new Histogram({
      name: prometheusName(metric),
      help: metric.description,
      labelNames: metric.labels,
      buckets: resolved.buckets[key],
      registers: [],
      collect() {
        observations?.flush()
      },
    })
    histograms.set(metric.name, histogram)
    instruments.set(prometheusName(metric), histogram)
  }
  for (const metric of ALL_METRICS) {
    if (metric.kind === 'histogram') continue
    instruments.set(prometheusName(metric), readAtScrape(metric, snapshot))
  }
  for (const [name, instrument] of instruments) {
    try {
      registry.registerMetric(instrument)
    } catch (error) {
      for (const registered of instruments.keys()) {
        if (registered === name) break
        registry.removeSingleMetric(registered)
      }
      throw error
    }
  }

  observations = subscribeObservations((observation) => {
    histograms.get(observation.metric.name)?.observe(observation.labels, observation.value)
  })

  const refuseWhenStopped = (call: string) => {
    if (stopped) throw new InvalidOperationError(`${call}: these layercache metrics were stopped`)
  }

  return {
    registry,
    observe(stack) {
      refuseWhenStopped('observe')
      return addStack(stack)
    },
    observeWriteBehind(queue) {
      refuseWhenStopped('observeWriteBehind')
      return addQueue(queue)
    },
    stop() {
      if (stopped) return
      stopped = true
      observations.stop()
      stacks.clear()
      queues.clear()
      for (const [name, instrument] of instruments) {
        // Only ours: after a stop and a new registration elsewhere, the name may be another's.
        if (registry.getSingleMetric(name) === instrument) registry.removeSingleMetric(name)
      }
    },
  }
}

/** Each histogram with its key in HISTOGRAMS (the name the `buckets` option uses). */
function histogramEntries(): Array<[HistogramName, MetricDefinition]> {
  return Object.entries(HISTOGRAMS) as Array<[HistogramName, MetricDefinition]>
}

/** A counter or gauge whose values are set from the scrape's snapshot each time it is collected. */
function readAtScrape(metric: MetricDefinition, snapshot: () => Promise<Snapshot>): Counter | Gauge {
  const config = { name: prometheusName(metric), help: metric.description, labelNames: metric.labels }
  if (metric.kind === 'counter') {
    const counter: Counter = new Counter({
      ...config,
      registers: [],
      async collect() {
        const samples = (await snapshot()).get(metric.name) ?? []
        // Reset and refill in one synchronous run: a concurrent scrape cannot interleave.
        counter.reset()
        for (const sample of samples) counter.inc(sample.labels, sample.value)
      },
    })
    return counter
  }
  const gauge: Gauge = new Gauge({
    ...config,
    registers: [],
    async collect() {
      const samples = (await snapshot()).get(metric.name) ?? []
      gauge.reset()
      for (const sample of samples) gauge.set(sample.labels, sample.value)
    },
  })
  return gauge
}

async function readSources(sources: readonly Source[]): Promise<Snapshot> {
  const read = await Promise.all(sources.map(async (source) => ({ source, samples: await source.read() })))
  const snapshot: Snapshot = new Map()
  for (const { source, samples } of read) {
    for (const sample of samples) {
      const labels = sample.labels as LabelValues<string>
      const value =
        sample.metric.kind === 'counter'
          ? source.counters.value(`${sample.metric.name}${JSON.stringify(labels)}`, sample.value)
          : sample.value
      const list = snapshot.get(sample.metric.name) ?? []
      list.push({ labels, value })
      snapshot.set(sample.metric.name, list)
    }
  }
  return snapshot
}
