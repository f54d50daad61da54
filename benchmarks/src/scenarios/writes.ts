import type { Redis } from 'ioredis'
import { CacheStack, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternateAmong, median, nowNs, orderOf, pairedRatio, percentile, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { type Budget, formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'
import {
  countExisting,
  countPerCall,
  countServerCommands,
  describePerCall,
  describeServerCommands,
  describeWaits,
  medianTrips,
  medianWaits,
  type PerCallTraffic,
  type ServerCommands,
} from '../traffic'

/** Keys each side cycles through (every timed write overwrites one the warm-up wrote). */
const KEY_COUNT = 1000
/** Calls per side whose round trips (client) and commands (server) are counted, after timing. */
const COUNTED = 20

/**
 * raw: `client.set(key, JSON, 'PX', ttl)` on the plain client; rawPipelined: the same on the
 * auto-pipelining client; the others: `cache.set` on CacheStack([RedisLayer]) on the plain client.
 */
type Side = 'raw' | 'rawPipelined' | 'noIndex' | 'indexed' | 'tagged1' | 'tagged3'
const SIDES: readonly Side[] = ['raw', 'rawPipelined', 'noIndex', 'indexed', 'tagged1', 'tagged3']
type Ours = Exclude<Side, 'raw' | 'rawPipelined'>
const OURS: readonly Ours[] = ['noIndex', 'indexed', 'tagged1', 'tagged3']

const TAGS: Record<Ours, readonly string[] | undefined> = {
  noIndex: undefined,
  indexed: undefined,
  tagged1: ['t'],
  tagged3: ['t', 'u', 'v'],
}

const LABEL: Record<Ours, string> = {
  noIndex: 'cache.set, keyIndex: false',
  indexed: 'cache.set (default: key index)',
  tagged1: "cache.set with tags: ['t']",
  tagged3: "cache.set with tags: ['t', 'u', 'v']",
}

/** DESIGN.md: `set` (prefix/pattern support on) ≤ 1.3×, with 1–3 tags ≤ 1.6× a raw SET PX, one round trip. */
const P50_BUDGET: Record<Ours, Budget | undefined> = {
  noIndex: undefined,
  indexed: { text: '≤ 1.3× p50', maxRatio: 1.3 },
  tagged1: { text: '≤ 1.6× p50', maxRatio: 1.6 },
  tagged3: { text: '≤ 1.6× p50', maxRatio: 1.6 },
}
const ONE_ROUND_TRIP: Budget = { text: '1 round trip (1× raw)', maxRatio: 1 }

/**
 * Writes, 1 caller: sequential writes of the same JSON payload. CacheStack([RedisLayer]) `cache.set`
 * with the layer's key index off, on (the default), with one tag and with three tags, against a raw
 * `client.set(key, JSON.stringify(payload), 'PX', ttl)` on a plain client (the budget baseline) and on
 * an auto-pipelining client (info), all in one alternation.
 */
export async function writes(ctx: BenchContext): Promise<ScenarioResult> {
  const client: Redis = ctx.client
  const pipelined: Redis = ctx.pipelinedClient
  const keys = makeKeys(KEY_COUNT)
  const prefixOf = (side: Side) => `${ctx.prefix}writes:${side}:`
  const rawKeysOf = (side: 'raw' | 'rawPipelined') => keys.map((key) => prefixOf(side) + key)
  const rawKeys = { raw: rawKeysOf('raw'), rawPipelined: rawKeysOf('rawPipelined') }
  const layers = {} as Record<Ours, RedisLayer>
  const stacks = {} as Record<Ours, CacheStack>
  for (const side of OURS) {
    layers[side] = new RedisLayer({
      client,
      ttl: REDIS_TTL_MS,
      prefix: prefixOf(side),
      ...(side === 'noIndex' ? { keyIndex: false } : {}),
    })
    stacks[side] = new CacheStack([layers[side]])
  }

  try {
    const at = {} as Record<Side, number>
    for (const side of SIDES) at[side] = 0
    // One loop per side; every op timed on its own (ops take tens of µs, the timer well under 1 µs).
    const rawLoop =
      (side: 'raw' | 'rawPipelined', redis: Redis) => async (n: number, latencies: number[] | undefined) => {
        const sideKeys = rawKeys[side]
        let j = at[side]
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await redis.set(sideKeys[j]!, JSON.stringify(PAYLOAD), 'PX', REDIS_TTL_MS)
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at[side] = j
      }
    const oursLoop = (side: Ours) => {
      const cache = stacks[side]
      const options = TAGS[side] === undefined ? undefined : { tags: TAGS[side] }
      return async (n: number, latencies: number[] | undefined) => {
        let j = at[side]
        for (let i = 0; i < n; i++) {
          const t0 = nowNs()
          await cache.set(keys[j]!, PAYLOAD, options)
          latencies?.push(sinceNs(t0))
          if (++j === KEY_COUNT) j = 0
        }
        at[side] = j
      }
    }
    const run: Record<Side, (n: number, latencies: number[] | undefined) => Promise<void>> = {
      raw: rawLoop('raw', client),
      rawPipelined: rawLoop('rawPipelined', pipelined),
      noIndex: oursLoop('noIndex'),
      indexed: oursLoop('indexed'),
      tagged1: oursLoop('tagged1'),
      tagged3: oursLoop('tagged3'),
    }

    // Warm-up: at least one pass over every key per side, in slices with the side order alternating.
    const warmup = Math.max(KEY_COUNT, scaled(ctx, 2000))
    const slices = 4
    for (let w = 0; w < slices; w++) {
      for (const side of orderOf(SIDES, w)) await run[side](Math.ceil(warmup / slices), undefined)
    }

    const rounds = Math.max(3, scaled(ctx, 30))
    const opsPerRound = Math.max(50, scaled(ctx, 500))
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

    // Round trips per write, per call (client side), and commands per write (server side), after timing.
    const one = (side: Side) => () => run[side](1, undefined)
    const traffic = {} as Record<Side, PerCallTraffic>
    for (const side of SIDES) {
      traffic[side] = await countPerCall(side === 'rawPipelined' ? pipelined : client, COUNTED, one(side))
    }
    // The budget is one round trip: the raw SET must take exactly that, so the ratio is the budget.
    for (const side of ['raw', 'rawPipelined'] as const) {
      if (medianTrips(traffic[side]) !== 1) {
        throw new Error(
          `writes scenario is invalid: ${side} SET took ${medianTrips(traffic[side])} round trips`,
        )
      }
    }
    const server: Partial<Record<Side, ServerCommands>> = {}
    if (ctx.redisSpawned) {
      for (const side of SIDES) server[side] = await countServerCommands(client, COUNTED, one(side))
    }

    // Every side must have left all its keys in Redis, ours must read back as the payload, and the
    // tagged sides must have recorded every tag: invalidating the last one removes all keys.
    const problems: string[] = []
    for (const side of ['raw', 'rawPipelined'] as const) {
      const left = await countExisting(client, rawKeys[side])
      if (left !== KEY_COUNT) problems.push(`${side}: ${left} of ${KEY_COUNT} keys in Redis`)
    }
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
    for (const side of ['tagged1', 'tagged3'] as const) {
      const lastTag = TAGS[side]!.at(-1)!
      const removed = await stacks[side].invalidateByTag(lastTag)
      const left = await countExisting(
        client,
        keys.map((key) => prefixOf(side) + key),
      )
      if (removed !== KEY_COUNT || left !== 0) {
        problems.push(`${side}: invalidateByTag('${lastTag}') removed ${removed}, ${left} keys left`)
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
        metric: `p50 latency per op vs raw SET PX (plain client), median of ${rounds} rounds`,
        ours: formatNs(median(perRoundP50[side])),
        baseline: formatNs(median(perRoundP50.raw)),
        ratio: p50.median,
        roundRange: p50.range,
        budget: P50_BUDGET[side],
      })
      const p50Pipelined = pairedRatio(perRoundP50[side], perRoundP50.rawPipelined)
      rows.push({
        scenario,
        metric: `p50 latency per op vs raw SET PX on an auto-pipelining client, median of ${rounds} rounds`,
        ours: formatNs(median(perRoundP50[side])),
        baseline: formatNs(median(perRoundP50.rawPipelined)),
        ratio: p50Pipelined.median,
        roundRange: p50Pipelined.range,
      })
      const p99 = percentile(pooled[side], 99)
      const rawP99 = percentile(pooled.raw, 99)
      rows.push({
        scenario,
        metric: `p99 latency per op vs raw SET PX (plain client), all ${formatCount(totalOps)} ops pooled`,
        ours: formatNs(p99),
        baseline: formatNs(rawP99),
        ratio: p99 / rawP99,
      })
      const rate = pairedRatio(perRoundRate[side], perRoundRate.raw)
      rows.push({
        scenario,
        metric: `throughput vs raw SET PX (plain client), median of ${rounds} rounds`,
        ours: formatRate(median(perRoundRate[side])),
        baseline: formatRate(median(perRoundRate.raw)),
        ratio: rate.median,
        roundRange: rate.range,
      })
      const trips = medianTrips(traffic[side])
      const rawTrips = medianTrips(traffic.raw)
      rows.push({
        scenario,
        metric:
          `Redis round trips per write, median per call (client side; ours: ${describePerCall(traffic[side])}; ` +
          `raw: ${describePerCall(traffic.raw)})`,
        ours: formatCount(trips),
        baseline: formatCount(rawTrips),
        ratio: trips / rawTrips,
        budget: side === 'noIndex' ? undefined : ONE_ROUND_TRIP,
      })
      const waits = medianWaits(traffic[side])
      rows.push({
        scenario,
        metric:
          'Redis round trips per write counted as waits (a command sent after one of the call\u2019s replies ' +
          'arrived starts a new one; commands sent together share one, pipelined or not), median per call ' +
          `(ours: ${describeWaits(traffic[side])})`,
        ours: formatCount(waits),
        baseline: formatCount(medianWaits(traffic.raw)),
        ratio: waits / medianWaits(traffic.raw),
      })
      const ourCommands = server[side]
      const rawCommands = server.raw
      if (ourCommands !== undefined && rawCommands !== undefined) {
        rows.push({
          scenario,
          metric:
            `Redis commands per write, executed by the server (INFO commandstats; ours: ` +
            `${describeServerCommands(ourCommands)}; raw: ${describeServerCommands(rawCommands)})`,
          ours: formatCount(median(ourCommands.totals)),
          baseline: formatCount(median(rawCommands.totals)),
          ratio: median(ourCommands.totals) / median(rawCommands.totals),
        })
      }
    }
    const autoCost = pairedRatio(perRoundP50.rawPipelined, perRoundP50.raw)
    rows.push({
      scenario: 'Writes, 1 caller: raw SET PX, auto-pipelining client',
      metric: `p50 latency per op vs the same SET on the plain client, median of ${rounds} rounds`,
      ours: formatNs(median(perRoundP50.rawPipelined)),
      baseline: formatNs(median(perRoundP50.raw)),
      ratio: autoCost.median,
      roundRange: autoCost.range,
    })

    return {
      rows,
      method: [
        `Writes, 1 caller: CacheStack([RedisLayer({ client, ttl: ${REDIS_TTL_MS}, prefix })]) ` +
          '`await cache.set(k, payload)` with `keyIndex: false`, with the default key index (prefix/pattern ' +
          "support on), with `{ tags: ['t'] }` and with `{ tags: ['t', 'u', 'v'] }` (four layers, each under " +
          "its own prefix, all on one plain ioredis client) vs `await client.set(rawKey, JSON.stringify(payload), 'PX', " +
          `${REDIS_TTL_MS})\` on that plain client and on an ioredis client with enableAutoPipelining; ` +
          `${KEY_COUNT} keys cycled per side, so after the warm-up every write overwrites an existing key (each ` +
          `tag keeps ${formatCount(KEY_COUNT)} members).`,
        'Writes, 1 caller: budget rows compare with the raw SET on the plain client: ours runs on a plain ' +
          'client, and for one caller the plain client is the faster raw baseline (auto-pipelining defers every ' +
          'command to the next tick); the rows "vs … auto-pipelining client" and "raw SET PX, ' +
          'auto-pipelining client" show the other baseline and what auto-pipelining costs one caller (info).',
        `Writes, 1 caller: ${formatCount(warmup)} warm-up writes per side, then ${rounds} rounds × ` +
          `${formatCount(opsPerRound)} sequential writes per side, the six sides in A B C D E F / F E D C B A ` +
          'order; every write timed alone with process.hrtime.bigint. p50 and throughput rows: per round and ' +
          'side, ratio = median of the per-round ratios to the baseline of the same round; p99 rows: all ' +
          'writes of a side pooled.',
        `Writes, 1 caller: after timing, ${COUNTED} more writes per side are counted one by one. Round trips ` +
          '(client side) = requests the call wrote to the connection: pipeline flushes (pipeline, ' +
          'multi/exec, auto-pipelining batch) + commands sent outside a pipeline (a script call is one ' +
          'command); commands sent on their own in the same tick count one each. Each command is attributed ' +
          "to the call whose async context sent it (AsyncLocalStorage around ioredis's sendCommand), so the " +
          "layer's background key-index collection on the same client is not counted; the budget row takes " +
          'the median call and shows every call. The "waits" rows count the other way (info): a call\u2019s ' +
          'command sent after one of its replies arrived starts a new round trip, commands sent together share ' +
          'one whether pipelined or not (what test/round-trips.test.ts in layer-redis counts). ' +
          (ctx.redisSpawned
            ? 'Commands (server side) = the INFO commandstats delta around each call on the throwaway server ' +
              '(commands run inside scripts and MULTI included, INFO itself left out), median of the calls.'
            : 'Commands (server side): not counted, the Redis is shared (REDIS_URL), so INFO commandstats ' +
              'would include other clients.'),
        'Writes, 1 caller: checked after counting: every side\u2019s keys are all in Redis (EXISTS), ours read ' +
          'back as the payload, and for the tagged sides `invalidateByTag` of the last tag removes all ' +
          `${formatCount(KEY_COUNT)} keys (every tag was recorded).`,
      ],
    }
  } finally {
    // Clean up whether or not the run succeeded: our layers clear their prefixes, the raw keys are deleted.
    for (const side of OURS) {
      await layers[side].clear()
      stacks[side].close()
    }
    for (const list of [rawKeys.raw, rawKeys.rawPipelined]) {
      for (let i = 0; i < list.length; i += 500) await client.unlink(...list.slice(i, i + 500))
    }
  }
}
