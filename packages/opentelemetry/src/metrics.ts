import {
  type CacheStack,
  HISTOGRAMS,
  type MetricDefinition,
  type ObservableQueue,
  type ObservationSubscription,
  type Sample,
  STACK_METRICS,
  stackSamples,
  subscribeObservations,
  WRITE_BEHIND_METRICS,
  writeBehindSamples,
} from '@layercache/core'
import type {
  BatchObservableResult,
  Histogram,
  Meter,
  Observable,
  ObservableCounter,
  ObservableGauge,
} from '@opentelemetry/api'

/**
 * Bucket bounds (seconds) for the duration histograms: a memory-backed call takes microseconds, a Redis
 * round trip a fraction of a millisecond, a loader milliseconds to seconds.
 */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

/**
 * The metrics side: histograms fed by `operation.done` (calls past memory, loads, bus lag, write-behind
 * batches), and counters and gauges read from the observed stacks and queues when the SDK collects, so
 * they cost nothing per call.
 */
export class MetricsBridge {
  private readonly histograms = new Map<string, Histogram>()
  private readonly observables = new Map<string, ObservableCounter | ObservableGauge>()
  private readonly stacks = new Set<CacheStack>()
  private readonly queues = new Set<ObservableQueue>()
  private readonly observations: ObservationSubscription
  private readonly collect = (result: BatchObservableResult) => this.observeAll(result)

  constructor(
    private readonly meter: Meter,
    buckets: readonly number[],
  ) {
    for (const definition of Object.values(HISTOGRAMS)) {
      this.histograms.set(
        definition.name,
        meter.createHistogram(definition.name, {
          description: definition.description,
          unit: definition.unit,
          advice: { explicitBucketBoundaries: [...buckets] },
        }),
      )
    }
    for (const definition of [...Object.values(STACK_METRICS), ...Object.values(WRITE_BEHIND_METRICS)]) {
      this.observables.set(definition.name, this.observable(definition))
    }
    meter.addBatchObservableCallback(this.collect, [...this.observables.values()] as Observable[])
    this.observations = subscribeObservations((observation) => {
      this.histograms.get(observation.metric.name)?.record(observation.value, observation.labels)
    })
  }

  observe(stack: CacheStack): () => void {
    this.stacks.add(stack)
    return () => this.stacks.delete(stack)
  }

  observeWriteBehind(queue: ObservableQueue): () => void {
    this.queues.add(queue)
    return () => this.queues.delete(queue)
  }

  stop(): void {
    this.observations.stop()
    this.meter.removeBatchObservableCallback(this.collect, [...this.observables.values()] as Observable[])
    this.stacks.clear()
    this.queues.clear()
  }

  private observable(definition: MetricDefinition): ObservableCounter | ObservableGauge {
    const options = { description: definition.description, unit: definition.unit }
    return definition.kind === 'counter'
      ? this.meter.createObservableCounter(definition.name, options)
      : this.meter.createObservableGauge(definition.name, options)
  }

  private async observeAll(result: BatchObservableResult): Promise<void> {
    // The SDK runs this before it reads the histograms: what calls queued goes in first.
    this.observations.flush()
    const samples: Sample[] = []
    for (const queue of this.queues) samples.push(...writeBehindSamples(queue))
    for (const batch of await Promise.all([...this.stacks].map((stack) => stackSamples(stack)))) {
      samples.push(...batch)
    }
    for (const sample of samples) {
      const observable = this.observables.get(sample.metric.name)
      if (observable !== undefined) result.observe(observable, sample.value, sample.labels)
    }
  }
}
