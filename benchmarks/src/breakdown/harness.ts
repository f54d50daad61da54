import { type PerformanceEntry, PerformanceObserver, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { consume, median, nowNs, roundRatios, sinceNs } from '../measure'
import { formatNs, formatRatio } from '../report'

/** One way of doing the operation under study; `op(key)` may return a value or a promise. */
export interface Variant {
  readonly name: string
  readonly op: (key: string) => unknown
  /** Await each op (default true). */
  readonly awaited?: boolean
}

export interface Plan {
  readonly warmupOps: number
  readonly rounds: number
  readonly opsPerRound: number
  /** Ops started together and awaited with Promise.all (default 1: sequential). */
  readonly concurrency?: number
}

type Loop = (n: number) => Promise<number>

/**
 * A fresh loop per variant, compiled from source so every variant gets its own call site and JIT
 * feedback (one shared loop would turn the op call megamorphic and blur the differences).
 */
function compileLoop(variant: Variant, keys: readonly string[], concurrency: number): Loop {
  if (concurrency > 1) {
    const factory = new Function(
      'op',
      'keys',
      `let j = 0
      const calls = new Array(${concurrency})
      return async function loop(n) {
        let miss = 0
        for (let i = 0; i < n; i += ${concurrency}) {
          for (let c = 0; c < ${concurrency}; c++) {
            calls[c] = op(keys[j])
            if (++j === keys.length) j = 0
          }
          const values = await Promise.all(calls)
          for (let c = 0; c < ${concurrency}; c++) if (values[c] === undefined) miss++
        }
        return miss
      }`,
    ) as (op: Variant['op'], keys: readonly string[]) => Loop
    return factory(variant.op, keys)
  }
  const body =
    variant.awaited === false
      ? 'if (op(keys[j]) === undefined) miss++'
      : 'if ((await op(keys[j])) === undefined) miss++'
  const factory = new Function(
    'op',
    'keys',
    `let j = 0
    return async function loop(n) {
      let miss = 0
      for (let i = 0; i < n; i++) {
        ${body}
        if (++j === keys.length) j = 0
      }
      return miss
    }`,
  ) as (op: Variant['op'], keys: readonly string[]) => Loop
  return factory(variant.op, keys)
}

export interface VariantResult {
  readonly name: string
  readonly nsPerOp: number
  readonly vsFirst: number
  readonly range: readonly [number, number]
  /** This process's CPU time (user + system) per op, median of rounds. */
  readonly cpuNsPerOp: number
  /** Garbage collections (mostly scavenges) per 1000 ops, over all timed rounds: allocation pressure. */
  readonly gcPer1000Ops: number
  /** Time spent in garbage collection per op, over all timed rounds. */
  readonly gcNsPerOp: number
}

/**
 * Times every variant in rounds; inside a round the order rotates so no variant always runs first.
 * Reports the median ns/op and the median of its per-round ratio to the first variant.
 */
export async function compareVariants(
  variants: readonly Variant[],
  keys: readonly string[],
  plan: Plan,
): Promise<VariantResult[]> {
  const loops = variants.map((v) => compileLoop(v, keys, plan.concurrency ?? 1))
  const perRound: number[][] = variants.map(() => [])
  const cpuPerRound: number[][] = variants.map(() => [])
  const windows: { index: number; from: number; to: number }[] = []
  const gcs: PerformanceEntry[] = []
  const observer = new PerformanceObserver((list) => gcs.push(...list.getEntries()))
  observer.observe({ entryTypes: ['gc'] })
  for (const loop of loops) consume(await loop(plan.warmupOps))
  for (let round = 0; round < plan.rounds; round++) {
    for (let k = 0; k < loops.length; k++) {
      const index = (round + k) % loops.length
      const cpu0 = process.cpuUsage()
      const from = performance.now()
      const start = nowNs()
      const missed = await loops[index]!(plan.opsPerRound)
      perRound[index]!.push(sinceNs(start) / plan.opsPerRound)
      windows.push({ index, from, to: performance.now() })
      const cpu = process.cpuUsage(cpu0)
      cpuPerRound[index]!.push(((cpu.user + cpu.system) * 1000) / plan.opsPerRound)
      if (missed > 0) throw new Error(`${variants[index]!.name}: ${missed} misses`)
    }
  }
  await sleep(20)
  observer.disconnect()
  const gcCount = variants.map(() => 0)
  const gcMs = variants.map(() => 0)
  for (const gc of gcs) {
    const w = windows.find((win) => gc.startTime >= win.from && gc.startTime <= win.to)
    if (w === undefined) continue
    gcCount[w.index]!++
    gcMs[w.index]! += gc.duration
  }
  const timedOps = plan.rounds * plan.opsPerRound
  return variants.map((v, i) => {
    const ratios = roundRatios(perRound[i]!, perRound[0]!)
    return {
      name: v.name,
      nsPerOp: median(perRound[i]!),
      vsFirst: median(ratios),
      range: [Math.min(...ratios), Math.max(...ratios)] as const,
      cpuNsPerOp: median(cpuPerRound[i]!),
      gcPer1000Ops: (gcCount[i]! * 1000) / timedOps,
      gcNsPerOp: (gcMs[i]! * 1e6) / timedOps,
    }
  })
}

export function printVariants(title: string, results: readonly VariantResult[]): void {
  console.log(`\n${title}`)
  const width = Math.max(...results.map((r) => r.name.length))
  for (const r of results) {
    const range = `${formatRatio(r.range[0])}–${formatRatio(r.range[1])}`
    console.log(
      `  ${r.name.padEnd(width)}  ${formatNs(r.nsPerOp).padStart(9)}  ${formatRatio(r.vsFirst)} (${range})` +
        `  cpu ${formatNs(r.cpuNsPerOp)}/op  gc ${r.gcPer1000Ops.toFixed(2)}/1000 ops, ` +
        `${formatNs(r.gcNsPerOp)}/op`,
    )
  }
}
