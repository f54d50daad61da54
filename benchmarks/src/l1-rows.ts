import { type BenchContext, scaled } from './context'
import { type BatchPlan, median, pairedRatio, type SideSamples } from './measure'
import { formatNs, formatRate, percentileRows, type Row } from './report'

/** Per-op latencies of the L1 scenarios are means of batches of this many ops. */
export const LATENCY_BATCH = 100

/** How both L1 scenarios time sub-microsecond hits: long rounds of ops plus 100-op latency batches. */
export function l1Plan(ctx: BenchContext): BatchPlan {
  return {
    warmupOps: scaled(ctx, 300_000),
    rounds: Math.max(2, scaled(ctx, 30)),
    opsPerRound: scaled(ctx, 60_000),
    latencyBatches: scaled(ctx, 250),
    latencyBatchOps: LATENCY_BATCH,
  }
}

/** One comparison: the time/op row (per-round paired ratio) and optionally the pooled p50/p99 rows. */
export function compareL1(
  scenario: string,
  a: SideSamples,
  b: SideSamples,
  withPercentiles: boolean,
  budgeted: boolean,
): Row[] {
  const aNs = median(a.perRound)
  const bNs = median(b.perRound)
  const paired = pairedRatio(a.perRound, b.perRound)
  const rows: Row[] = [
    {
      scenario,
      metric: `time/op, median of ${a.perRound.length} rounds`,
      ours: `${formatNs(aNs)} (${formatRate(1e9 / aNs)})`,
      baseline: `${formatNs(bNs)} (${formatRate(1e9 / bNs)})`,
      ratio: paired.median,
      roundRange: paired.range,
      budget: budgeted ? { text: '≤ 1.3× time', maxRatio: 1.3 } : undefined,
    },
  ]
  if (!withPercentiles) return rows
  rows.push(
    ...percentileRows(
      scenario,
      a.latencies,
      b.latencies,
      (p) => `p${p} per op (means of ${LATENCY_BATCH}-op batches)`,
    ),
  )
  return rows
}
