import { hrtime } from 'node:process'

/** Monotonic nanoseconds. */
export function nowNs(): bigint {
  return hrtime.bigint()
}

/** Nanoseconds since `start` (a value from nowNs). */
export function sinceNs(start: bigint): number {
  return Number(hrtime.bigint() - start)
}

/**
 * Somewhere for measured loops to leave a result, so the JIT cannot prove their work unused.
 * Read once at the end of the run (main prints nothing from it; it only has to be observable).
 */
export const blackhole = { value: 0 }

export function consume(x: number): void {
  blackhole.value = (blackhole.value + x) | 0
}

/** The two sides of a comparison. */
export type Side = 'ours' | 'baseline'

/** Round r runs `ours, baseline` when r is even and `baseline, ours` when odd (A B B A A B …). */
export function sidesInOrder(round: number): readonly [Side, Side] {
  return round % 2 === 0 ? ['ours', 'baseline'] : ['baseline', 'ours']
}

/**
 * The same alternation for any number of sides: `sides` in order when r is even, reversed when odd
 * (A B C / C B A …), so every side runs as often early as late in a round pair.
 */
export function orderOf<S>(sides: readonly S[], round: number): readonly S[] {
  return round % 2 === 0 ? sides : [...sides].reverse()
}

/** Runs `rounds` rounds, each running both sides once in A B / B A alternation. */
export async function alternate(
  rounds: number,
  run: (side: Side, round: number) => Promise<void>,
): Promise<void> {
  await alternateAmong(['ours', 'baseline'], rounds, run)
}

/** Runs `rounds` rounds, each running every side once in A B C / C B A alternation. */
export async function alternateAmong<S>(
  sides: readonly S[],
  rounds: number,
  run: (side: S, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (const side of orderOf(sides, round)) await run(side, round)
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values')
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Nearest-rank percentile (p in 0..100) of values; sorts a copy. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values')
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]!
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) throw new Error('mean of no values')
  let sum = 0
  for (const v of values) sum += v
  return sum / values.length
}

/** Paired per-round ratios ours[i] / baseline[i], to show how much the ratio moves between rounds. */
export function roundRatios(ours: readonly number[], baseline: readonly number[]): number[] {
  return ours.map((value, i) => value / baseline[i]!)
}

export interface PairedRatio {
  /** Median of the per-round ratios: robust against a noisy neighbour slowing down a few rounds. */
  readonly median: number
  readonly range: readonly [number, number]
}

/**
 * Compares per-round values of two sides that ran back to back in each round: each round's ratio
 * ours / baseline is taken on its own (both sides saw the same machine load), then the median.
 */
export function pairedRatio(ours: readonly number[], baseline: readonly number[]): PairedRatio {
  const ratios = roundRatios(ours, baseline)
  return { median: median(ratios), range: [Math.min(...ratios), Math.max(...ratios)] }
}

/** Collected per side while a scenario runs. */
export class SideSamples {
  /** One value per round (e.g. ns per op, or ops/s), in round order. */
  readonly perRound: number[] = []
  /** Latency samples in ns (per op, per batch mean, or per concurrent batch, depending on the scenario). */
  readonly latencies: number[] = []
  ops = 0
}

export function newSamples(): Record<Side, SideSamples> {
  return { ours: new SideSamples(), baseline: new SideSamples() }
}

/**
 * Times sequential sub-microsecond operations.
 * - `batch(n)` runs n awaited operations in a loop written for that side alone (its own call sites,
 *   so neither side's JIT feedback is polluted by the other).
 * - Per round: one timed batch of `opsPerRound` ops gives the round's ns/op; then `latencyBatches`
 *   batches of `latencyBatchOps` ops are timed one by one, and each batch's mean ns/op is a latency sample
 *   (a per-op timer would cost more than the operation).
 */
export interface BatchPlan {
  readonly warmupOps: number
  readonly rounds: number
  readonly opsPerRound: number
  readonly latencyBatches: number
  readonly latencyBatchOps: number
}

export async function measureBatches(
  plan: BatchPlan,
  batches: Record<Side, (n: number) => Promise<void>>,
): Promise<Record<Side, SideSamples>> {
  return measureBatchesAmong(plan, ['ours', 'baseline'], batches)
}

/** measureBatches for any number of sides (e.g. ours with options, ours without, raw library). */
export async function measureBatchesAmong<S extends string>(
  plan: BatchPlan,
  sides: readonly S[],
  batches: Record<S, (n: number) => Promise<void>>,
): Promise<Record<S, SideSamples>> {
  const samples = {} as Record<S, SideSamples>
  for (const side of sides) samples[side] = new SideSamples()
  // Warm every side up in slices, alternating, so all reach optimised code before any timing.
  const slice = Math.max(1, Math.floor(plan.warmupOps / 10))
  for (let done = 0; done < plan.warmupOps; done += slice) {
    for (const side of orderOf(sides, done / slice)) await batches[side](slice)
  }
  await alternateAmong(sides, plan.rounds, async (side) => {
    const batch = batches[side]
    const out = samples[side]
    const start = nowNs()
    await batch(plan.opsPerRound)
    out.perRound.push(sinceNs(start) / plan.opsPerRound)
    out.ops += plan.opsPerRound
    for (let b = 0; b < plan.latencyBatches; b++) {
      const t0 = nowNs()
      await batch(plan.latencyBatchOps)
      out.latencies.push(sinceNs(t0) / plan.latencyBatchOps)
    }
    out.ops += plan.latencyBatches * plan.latencyBatchOps
  })
  return samples
}
