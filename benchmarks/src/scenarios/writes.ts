import type { Redis } from 'ioredis'
import { CacheStack, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternateAmong, median, nowNs, orderOf, pairedRatio, percentile, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'
import { countExisting, countTraffic, describeTraffic, roundTrips, type Traffic } from '../traffic'

/** Keys each side cycles through (every timed write overwrites one the warm-up wrote). */
const KEY_COUNT = 1000
const TAG = 't'

/** raw: `client.set(key, JSON, 'PX', ttl)`; the others: `cache.set` on CacheStack([RedisLayer]). */
type Side = 'raw' | 'noIndex' | 'indexed' | 'tagged'
const SIDES: readonly Side[] = ['raw', 'noIndex', 'indexed', 'tagged']
type Ours = Exclude<Side, 'raw'>
const OURS: readonly Ours[] = ['noIndex', 'indexed', 'tagged']

const LABEL: Record<Ours, string> = {
  noIndex: 'cache.set, keyIndex: false',
  indexed: 'cache.set (default: key index)',
  tagged: "cache.set with tags: ['t']",
}

/**
 * Writes, 1 caller: sequential writes of the same JSON payload. CacheStack([RedisLayer]) `cache.set`
 * with the layer's key index off, on (the default) and with one tag, against a raw
 * `client.set(key, JSON.stringify(payload), 'PX', ttl)`, all on the same plain client.
 */
export async function writes(ctx: BenchContext): Promise<ScenarioResult> {
  const client: Redis = ctx.client
  const keys = makeKeys(KEY_COUNT)
  const prefixOf = (side: Side) => `${ctx.prefix}writes:${side}:`
  const rawKeys = keys.map((key) => prefixOf('raw') + key)
  const layers: Record<Ours, RedisLayer> = {
    noIndex: new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: prefixOf('noIndex'), keyIndex: false }),
    indexed: new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: prefixOf('indexed') }),
    tagged: new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: prefixOf('tagged') }),
  }
  const stacks: Record<Ours, CacheStack> = {
    noIndex: new CacheStack([layers.noIndex]),
    indexed: new CacheStack([layers.indexed]),
    tagged: new CacheStack([layers.tagged]),
  }
  const tags = [TAG]

  try {
    const at: Record<Side, number> = { raw: 0, noIndex: 0, indexed: 0, tagged: 0 }
    // Own loop per side (own call sites for the JIT); every op timed on its own (ops take tens of µs).
    const run: Record<Side, (n: number, latencies: number[] | undefined) => Promise<void>> = {
      raw: async (n, latencies) => {
        let j = at.raw
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await client.set(rawKeys[j]!, JSON.stringify(PAYLOAD), 'PX', REDIS_TTL_MS)
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at.raw = j
      },
      noIndex: async (n, latencies) => {
        const cache = stacks.noIndex
        let j = at.noIndex
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await cache.set(keys[j]!, PAYLOAD)
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at.noIndex = j
      },
      indexed: async (n, latencies) => {
        const cache = stacks.indexed
        let j = at.indexed
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await cache.set(keys[j]!, PAYLOAD)
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at.indexed = j
      },
      tagged: async (n, latencies) => {
        const cache = stacks.tagged
        let j = at.tagged
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await cache.set(keys[j]!, PAYLOAD, { tags })
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at.tagged = j
      },
    }

    // Warm-up: at least one pass over every key per side, in slices with the side order alternating.
    const warmup = Math.max(KEY_COUNT, scaled(ctx, 2000))
    const slices = 4
    for (let w = 0; w < slices; w++) {
      for (const side of orderOf(SIDES, w)) await run[side](Math.ceil(warmup / slices), undefined)
    }

    const rounds = Math.max(2, scaled(ctx, 30))
    const opsPerRound = scaled(ctx, 500)
    const perRoundP50 = {} as Record<Side, number[]>
    const perRoundRate = {} as Record<Side, number[]>
    const pooled = {} as Record<Side, number[]>
    for (const side of SIDES) {
      perRoundP50[side] = []
      perRoundRate[side] = []
      pooled[side] = []
    }
    await alternateAmong(SIDES, rounds, async (side) => {
      const latencies: number[] = []
      const start = nowNs()
      await run[side](opsPerRound, latencies)
      perRoundRate[side].push(opsPerRound / (sinceNs(start) / 1e9))
      perRoundP50[side].push(percentile(latencies, 50))
      for (const ns of latencies) pooled[side].push(ns)
    })

    // Round trips of one write per side, counted on the client after timing (not timed).
    const traffic = {} as Record<Side, Traffic>
    const counted = 20
    for (const side of SIDES) {
      const counter = countTraffic(client)
      try {
        await run[side](counted, undefined)
      } finally {
        counter.stop()
      }
      traffic[side] = counter.traffic
    }

    // Every side must have left all its keys in Redis, and ours must read back as the payload.
    const problems: string[] = []
    const rawLeft = await countExisting(client, rawKeys)
    if (rawLeft !== KEY_COUNT) problems.push(`raw: ${rawLeft} of ${KEY_COUNT} keys in Redis`)
    for (const side of OURS) {
      const inRedis = await countExisting(
        client,
        keys.map((key) => prefixOf(side) + key),
      )
      if (inRedis !== KEY_COUNT) problems.push(`${side}: ${inRedis} of ${KEY_COUNT} keys in Redis`)
      for (const key of [keys[0]!, keys[KEY_COUNT - 1]!]) {
        const value = await stacks[side].get<Product>(key)
        if (value?.sku !== PAYLOAD.sku) problems.push(`${side}: ${key} does not read back as the payload`)
      }
    }
    if (problems.length > 0) throw new Error(`writes scenario is invalid: ${problems.join('; ')}`)

    const totalOps = rounds * opsPerRound
    const rows: Row[] = []
    for (const side of OURS) {
      const scenario = `Writes, 1 caller: ${LABEL[side]}`
      const p50 = pairedRatio(perRoundP50[side], perRoundP50.raw)
      rows.push({
        scenario,
        metric: `p50 latency per op vs raw SET PX, median of ${rounds} rounds`,
        ours: formatNs(median(perRoundP50[side])),
        baseline: formatNs(median(perRoundP50.raw)),
        ratio: p50.median,
        roundRange: p50.range,
      })
      const p99 = percentile(pooled[side], 99)
      const rawP99 = percentile(pooled.raw, 99)
      rows.push({
        scenario,
        metric: `p99 latency per op, all ${formatCount(totalOps)} ops pooled`,
        ours: formatNs(p99),
        baseline: formatNs(rawP99),
        ratio: p99 / rawP99,
      })
      const rate = pairedRatio(perRoundRate[side], perRoundRate.raw)
      rows.push({
        scenario,
        metric: `throughput, median of ${rounds} rounds`,
        ours: formatRate(median(perRoundRate[side])),
        baseline: formatRate(median(perRoundRate.raw)),
        ratio: rate.median,
        roundRange: rate.range,
      })
      const trips = roundTrips(traffic[side]) / counted
      const rawTrips = roundTrips(traffic.raw) / counted
      rows.push({
        scenario,
        metric: `Redis round trips per write (counted over ${counted} writes: ${describeTraffic(traffic[side])})`,
        ours: formatCount(trips),
        baseline: formatCount(rawTrips),
        ratio: trips / rawTrips,
      })
    }
    return {
      rows,
      method: [
        `Writes, 1 caller: CacheStack([RedisLayer({ client, ttl: ${REDIS_TTL_MS}, prefix })]) ` +
          "`await cache.set(k, payload)` with `keyIndex: false`, with the default key index, and with `{ tags: ['t'] }` " +
          `(three layers, each under its own prefix) vs \`await client.set(rawKey, JSON.stringify(payload), 'PX', ` +
          `${REDIS_TTL_MS})\`, all on one plain ioredis client; ${KEY_COUNT} keys cycled per side, so after the ` +
          'warm-up every write overwrites an existing key (the tagged side keeps one tag of 1 000 members).',
        `Writes, 1 caller: ${formatCount(warmup)} warm-up writes per side, then ${rounds} rounds × ` +
          `${formatCount(opsPerRound)} sequential writes per side, the four sides in A B C D / D C B A order; ` +
          'every write timed alone with process.hrtime.bigint. p50 and throughput rows: per round and side, ' +
          'ratio = median of the per-round ratios to the raw SET of the same round; p99 rows: all writes of a ' +
          `side pooled. Round trips counted on the client over ${counted} further writes per side. Checked ` +
          'after timing: every side\u2019s keys are all in Redis (EXISTS) and ours read back as the payload.',
      ],
    }
  } finally {
    // Clean up whether or not the run succeeded: our layers clear their prefixes, the raw keys are deleted.
    for (const side of OURS) await layers[side].clear()
    for (let i = 0; i < rawKeys.length; i += 500) await client.del(...rawKeys.slice(i, i + 500))
  }
}
