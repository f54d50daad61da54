import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { seedL2Fixture } from '../l2-fixture'
import {
  alternateAmong,
  consume,
  median,
  nowNs,
  orderOf,
  pairedRatio,
  percentile,
  SideSamples,
  sinceNs,
} from '../measure'
import type { Product } from '../payload'
import { formatCount, formatNs, formatRate, percentileRows, type Row, type ScenarioResult } from '../report'

const KEY_COUNT = 1000

/** ours and baseline on the plain client; pipelined: the raw baseline on the auto-pipelining client. */
const SIDES = ['ours', 'baseline', 'pipelined'] as const
type Sides = (typeof SIDES)[number]

/**
 * Scenario 2: one caller, sequential L2 hits. CacheStack([RedisLayer]) (no L1, so every get goes to
 * Redis) against `JSON.parse(await client.get(rawKey))` of the same JSON payload, on the same plain
 * client (the budget baseline), and the same raw read on an auto-pipelining client (info).
 */
export async function l2Hit(ctx: BenchContext): Promise<ScenarioResult> {
  const client = ctx.client
  const pipelinedClient = ctx.pipelinedClient
  const { cache, keys, layerPrefix, rawKeys } = await seedL2Fixture(ctx, client, 'l2', KEY_COUNT)
  const storedOurs = await client.strlen(layerPrefix + keys[0]!)
  const storedRaw = await client.strlen(rawKeys[0]!)

  let missing = 0
  let oursAt = 0
  let baseAt = 0
  let pipelinedAt = 0
  // Own loop per side; every op is timed on its own (ops take tens of µs, the timer well under 1 µs).
  const run = {
    ours: async (n: number, latencies: number[] | undefined) => {
      let j = oursAt
      let id = 0
      for (let i = 0; i < n; i++) {
        const t0 = nowNs()
        const value = await cache.get<Product>(keys[j]!)
        latencies?.push(sinceNs(t0))
        if (value === undefined) missing++
        else id += value.id
        if (++j === KEY_COUNT) j = 0
      }
      oursAt = j
      consume(id)
    },
    baseline: async (n: number, latencies: number[] | undefined) => {
      let j = baseAt
      let id = 0
      for (let i = 0; i < n; i++) {
        const t0 = nowNs()
        const text = await client.get(rawKeys[j]!)
        const value = text === null ? undefined : (JSON.parse(text) as Product)
        latencies?.push(sinceNs(t0))
        if (value === undefined) missing++
        else id += value.id
        if (++j === KEY_COUNT) j = 0
      }
      baseAt = j
      consume(id)
    },
    pipelined: async (n: number, latencies: number[] | undefined) => {
      let j = pipelinedAt
      let id = 0
      for (let i = 0; i < n; i++) {
        const t0 = nowNs()
        const text = await pipelinedClient.get(rawKeys[j]!)
        const value = text === null ? undefined : (JSON.parse(text) as Product)
        latencies?.push(sinceNs(t0))
        if (value === undefined) missing++
        else id += value.id
        if (++j === KEY_COUNT) j = 0
      }
      pipelinedAt = j
      consume(id)
    },
  }

  const warmup = scaled(ctx, 3000)
  const rounds = Math.max(3, scaled(ctx, 50))
  const opsPerRound = Math.max(100, scaled(ctx, 1000))
  const samples = {} as Record<Sides, SideSamples>
  const roundP50 = {} as Record<Sides, number[]>
  for (const side of SIDES) {
    samples[side] = new SideSamples()
    roundP50[side] = []
  }
  for (let w = 0; w < 4; w++) {
    for (const side of orderOf(SIDES, w)) await run[side](Math.ceil(warmup / 4), undefined)
  }
  await alternateAmong(SIDES, rounds, async (side) => {
    const out = samples[side]
    const latencies: number[] = []
    const start = nowNs()
    await run[side](opsPerRound, latencies)
    out.perRound.push(opsPerRound / (sinceNs(start) / 1e9))
    out.ops += opsPerRound
    out.latencies.push(...latencies)
    roundP50[side].push(percentile(latencies, 50))
  })
  const stats = cache.getStats()
  if (missing > 0 || stats.misses > 0) {
    throw new Error(`L2 scenario is invalid: ${missing} reads missed (stack misses ${stats.misses})`)
  }

  const { ours, baseline } = samples
  const rows: Row[] = []
  const scenario = 'L2 hit, 1 caller'
  const p50 = pairedRatio(roundP50.ours, roundP50.baseline)
  rows.push({
    scenario,
    metric: `p50 latency per op vs raw GET + JSON.parse (plain client), median of ${rounds} rounds`,
    ours: formatNs(median(roundP50.ours)),
    baseline: formatNs(median(roundP50.baseline)),
    ratio: p50.median,
    roundRange: p50.range,
    budget: { text: '≤ 1.05× p50', maxRatio: 1.05 },
  })
  const p50Pipelined = pairedRatio(roundP50.ours, roundP50.pipelined)
  rows.push({
    scenario,
    metric: `p50 latency per op vs raw GET + JSON.parse on an auto-pipelining client, median of ${rounds} rounds`,
    ours: formatNs(median(roundP50.ours)),
    baseline: formatNs(median(roundP50.pipelined)),
    ratio: p50Pipelined.median,
    roundRange: p50Pipelined.range,
  })
  rows.push(
    ...percentileRows(
      scenario,
      ours.latencies,
      baseline.latencies,
      (p) => `p${p} latency per op, all ${formatCount(ours.ops)} ops pooled`,
    ),
  )
  const rate = pairedRatio(ours.perRound, baseline.perRound)
  rows.push({
    scenario,
    metric: `throughput, median of ${rounds} rounds`,
    ours: formatRate(median(ours.perRound)),
    baseline: formatRate(median(baseline.perRound)),
    ratio: rate.median,
    roundRange: rate.range,
  })
  const autoCost = pairedRatio(roundP50.pipelined, roundP50.baseline)
  rows.push({
    scenario: 'L2 hit, 1 caller: raw GET, auto-pipelining client',
    metric: `p50 latency per op vs the same GET on the plain client, median of ${rounds} rounds`,
    ours: formatNs(median(roundP50.pipelined)),
    baseline: formatNs(median(roundP50.baseline)),
    ratio: autoCost.median,
    roundRange: autoCost.range,
  })
  return {
    rows,
    method: [
      `L2 hit, 1 caller: CacheStack([RedisLayer({ client, ttl: ${REDIS_TTL_MS} })]) \`await cache.get(k)\` ` +
        `vs \`JSON.parse(await client.get(rawKey))\`, both on one plain ioredis client (the budget row), and the ` +
        'same raw read on an ioredis client with enableAutoPipelining (info: for one caller it only defers ' +
        `each command to the next tick, so the plain client is the stricter baseline); ${KEY_COUNT} keys ` +
        `cycled; stored value ${storedOurs} bytes (ours: the [version, expiresAt, tags, value] ` +
        `envelope) vs ${storedRaw} bytes (raw JSON).`,
      `L2 hit, 1 caller: ${formatCount(warmup)} warm-up ops per side, then ${rounds} rounds × ` +
        `${formatCount(opsPerRound)} sequential ops per side (A B C / C B A); every op timed alone with ` +
        'process.hrtime.bigint. Budget row: each ' +
        `round's p50 per side, ratio = median of the per-round ratios; pooled rows: p50/p99 over all ` +
        `${formatCount(ours.ops)} ops of each side.`,
    ],
  }
}
