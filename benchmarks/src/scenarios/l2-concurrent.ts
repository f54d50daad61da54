import { type BenchContext, scaled } from '../context'
import { seedL2Fixture } from '../l2-fixture'
import { alternate, consume, median, newSamples, nowNs, pairedRatio, sinceNs } from '../measure'
import type { Product } from '../payload'
import { formatCount, formatRate, percentileRows, type Row, type ScenarioResult } from '../report'

const KEY_COUNT = 1000
const CALLERS = 100

/**
 * Scenario 3: 100 concurrent callers hitting L2. Both sides share one ioredis client created with
 * `enableAutoPipelining: true`; a batch is 100 gets started together and awaited with Promise.all.
 */
export async function l2Concurrent(ctx: BenchContext): Promise<ScenarioResult> {
  const client = ctx.pipelinedClient
  const { cache, keys, rawKeys } = await seedL2Fixture(ctx, client, 'l2c', KEY_COUNT)

  let missing = 0
  let oursAt = 0
  let baseAt = 0
  const rawGet = async (rawKey: string): Promise<Product | undefined> => {
    const text = await client.get(rawKey)
    return text === null ? undefined : (JSON.parse(text) as Product)
  }
  const tally = (values: readonly (Product | undefined)[]) => {
    let id = 0
    for (const value of values) {
      if (value === undefined) missing++
      else id += value.id
    }
    consume(id)
  }
  // `batches` concurrent batches of CALLERS gets each, one after the other; each batch is timed.
  const run = {
    ours: async (batches: number, latencies: number[] | undefined) => {
      const calls = new Array<Promise<Product | undefined>>(CALLERS)
      for (let b = 0; b < batches; b++) {
        const t0 = nowNs()
        for (let c = 0; c < CALLERS; c++) {
          calls[c] = cache.get<Product>(keys[oursAt]!)
          if (++oursAt === KEY_COUNT) oursAt = 0
        }
        const values = await Promise.all(calls)
        latencies?.push(sinceNs(t0))
        tally(values)
      }
    },
    baseline: async (batches: number, latencies: number[] | undefined) => {
      const calls = new Array<Promise<Product | undefined>>(CALLERS)
      for (let b = 0; b < batches; b++) {
        const t0 = nowNs()
        for (let c = 0; c < CALLERS; c++) {
          calls[c] = rawGet(rawKeys[baseAt]!)
          if (++baseAt === KEY_COUNT) baseAt = 0
        }
        const values = await Promise.all(calls)
        latencies?.push(sinceNs(t0))
        tally(values)
      }
    },
  }

  const warmupBatches = scaled(ctx, 100)
  const rounds = Math.max(3, scaled(ctx, 50))
  const batchesPerRound = scaled(ctx, 60)
  for (let w = 0; w < 4; w++) {
    await run.ours(Math.ceil(warmupBatches / 4), undefined)
    await run.baseline(Math.ceil(warmupBatches / 4), undefined)
  }
  const samples = newSamples()
  await alternate(rounds, async (side) => {
    const out = samples[side]
    const start = nowNs()
    await run[side](batchesPerRound, out.latencies)
    const ops = batchesPerRound * CALLERS
    out.perRound.push(ops / (sinceNs(start) / 1e9))
    out.ops += ops
  })
  const stats = cache.getStats()
  if (missing > 0 || stats.misses > 0) {
    throw new Error(`L2 concurrent scenario is invalid: ${missing} reads missed (stack ${stats.misses})`)
  }

  const { ours, baseline } = samples
  const scenario = `L2 hit, ${CALLERS} concurrent`
  const rate = pairedRatio(ours.perRound, baseline.perRound)
  const rows: Row[] = [
    {
      scenario,
      metric: `throughput, median of ${rounds} rounds`,
      ours: formatRate(median(ours.perRound)),
      baseline: formatRate(median(baseline.perRound)),
      ratio: rate.median,
      roundRange: rate.range,
      budget: { text: '≥ 1.0× throughput', minRatio: 1 },
    },
  ]
  rows.push(
    ...percentileRows(
      scenario,
      ours.latencies,
      baseline.latencies,
      (p) => `p${p} time for ${CALLERS} concurrent gets`,
    ),
  )
  return {
    rows,
    method: [
      `L2 hit, ${CALLERS} concurrent: CacheStack([RedisLayer]) \`cache.get(k)\` vs raw ` +
        `\`JSON.parse(await client.get(rawKey))\`, both on one ioredis client with ` +
        `enableAutoPipelining: true; a batch = ${CALLERS} gets started together and awaited with ` +
        `Promise.all; ${warmupBatches} warm-up batches per side, then ${rounds} rounds × ` +
        `${batchesPerRound} batches per side (A B / B A), ${formatCount(ours.ops)} ops per side; ` +
        'throughput per round; ratio = median of the per-round ratios; ' +
        `p50/p99 are of whole-batch times.`,
    ],
  }
}
