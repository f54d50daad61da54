// Timing helpers shared by the peer scenarios: every library runs in every round, in A B C / C B A order.
import { alternateAmong, median, nowNs, sinceNs } from '../measure'
import type { Library } from '../peers'
import type { PeerRow } from '../peers-report'

export interface LibSamples {
  /** ops/s of each round. */
  readonly perRound: number[]
  /** ns per sample (per op, per batch, …: the scenario says which). */
  readonly latencies: number[]
}

export function emptySamples(libraries: readonly Library[]): Record<Library, LibSamples> {
  const out = {} as Record<Library, LibSamples>
  for (const library of libraries) out[library] = { perRound: [], latencies: [] }
  return out
}

/**
 * Sequential ops timed one by one: `op(library, i)` runs the i-th op of a library (i counts up across
 * rounds). Warm-up ops first (untimed), then `rounds` rounds of `opsPerRound` ops per library.
 */
export async function timeEachOp(
  libraries: readonly Library[],
  plan: { readonly warmupOps: number; readonly rounds: number; readonly opsPerRound: number },
  op: (library: Library, i: number) => Promise<void>,
): Promise<Record<Library, LibSamples>> {
  const samples = emptySamples(libraries)
  const at = {} as Record<Library, number>
  for (const library of libraries) at[library] = 0
  const slice = Math.max(1, Math.ceil(plan.warmupOps / 4))
  await alternateAmong(libraries, 4, async (library) => {
    for (let i = 0; i < slice; i++) await op(library, at[library]++)
  })
  await alternateAmong(libraries, plan.rounds, async (library) => {
    const out = samples[library]
    const start = nowNs()
    for (let i = 0; i < plan.opsPerRound; i++) {
      const t0 = nowNs()
      await op(library, at[library]++)
      out.latencies.push(sinceNs(t0))
    }
    out.perRound.push(plan.opsPerRound / (sinceNs(start) / 1e9))
  })
  return samples
}

/** ops/s = median of the rounds; p50/p99 over all latency samples. */
export function rowsOf(
  scenario: string,
  samples: Record<Library, LibSamples>,
  extra?: (library: Library) => Partial<PeerRow>,
): PeerRow[] {
  return (Object.keys(samples) as Library[]).map((library) => {
    const s = samples[library]
    return {
      scenario,
      library,
      opsPerSec: median(s.perRound),
      perRound: s.perRound,
      p50Ns: percentileOf(s.latencies, 50),
      p99Ns: percentileOf(s.latencies, 99),
      ...extra?.(library),
    }
  })
}

function percentileOf(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
