import type { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternate, median, nowNs, pairedRatio, percentile, type Side, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { type Budget, formatCount, formatNs, type Row, type ScenarioResult } from '../report'
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

const KEY_COUNT = 1000
const L1_TTL_MS = 60_000
const L1_MAX = 10_000
/** Calls per variant whose round trips (client) and commands (server) are counted, after timing. */
const COUNTED = 20

/** One timed operation: `prepare` (untimed) puts the state in place, `run` is timed, `check` verifies. */
interface TimedOp {
  prepare?(i: number): Promise<void>
  run(i: number): Promise<void>
  check?(i: number): Promise<void>
}

/** Per round: each op prepared, timed alone, checked; the round's p50 and every latency. */
async function timeOps(
  ops: Record<Side, TimedOp>,
  plan: { warmup: number; rounds: number; opsPerRound: number },
): Promise<Record<Side, { roundP50: number[]; latencies: number[] }>> {
  const out = { ours: { roundP50: [], latencies: [] }, baseline: { roundP50: [], latencies: [] } } as Record<
    Side,
    { roundP50: number[]; latencies: number[] }
  >
  const at = { ours: 0, baseline: 0 }
  const runSome = async (side: Side, n: number, latencies: number[] | undefined) => {
    const op = ops[side]
    for (let k = 0; k < n; k++) {
      const i = at[side]++
      await op.prepare?.(i)
      const t0 = nowNs()
      await op.run(i)
      latencies?.push(sinceNs(t0))
      await op.check?.(i)
    }
  }
  for (let w = 0; w < 4; w++) {
    for (const side of w % 2 === 0 ? (['ours', 'baseline'] as const) : (['baseline', 'ours'] as const)) {
      await runSome(side, Math.ceil(plan.warmup / 4), undefined)
    }
  }
  await alternate(plan.rounds, async (side) => {
    const latencies: number[] = []
    await runSome(side, plan.opsPerRound, latencies)
    out[side].roundP50.push(percentile(latencies, 50))
    out[side].latencies.push(...latencies)
  })
  return out
}

/**
 * getOrSet miss and delete: the Redis round trips of `cache.getOrSet` on a key no layer holds (besides
 * the loader) and of `cache.delete` of a key without dependents, on CacheStack([MemoryLayer, RedisLayer]),
 * each against what a good engineer writes by hand on lru-cache + ioredis: GET, loader, SET PX (2 round
 * trips) and UNLINK (1). Latencies are info; the round trips are the budget.
 */
export async function missAndDelete(ctx: BenchContext): Promise<ScenarioResult> {
  const client: Redis = ctx.client
  const layerPrefix = `${ctx.prefix}md:ours:`
  const rawPrefix = `${ctx.prefix}md:raw:`
  const redisLayer = new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: layerPrefix })
  const memory = new MemoryLayer({ ttl: L1_TTL_MS, maxSize: L1_MAX })
  const cache = new CacheStack([memory, redisLayer])
  const lru = new LRUCache<string, Product>({ max: L1_MAX, ttl: L1_TTL_MS })
  const keys = makeKeys(KEY_COUNT)

  try {
    // getOrSet miss: every call on a key nobody wrote before (miss:<side>:<n>), the loader answers at once.
    let oursLoads = 0
    let rawLoads = 0
    const oursLoader = (): Product => {
      oursLoads++
      return PAYLOAD
    }
    const rawLoader = (): Product => {
      rawLoads++
      return PAYLOAD
    }
    let missSeq = 0
    const missKey = (tag: string, i: number) => `miss:${tag}:${i}:${missSeq}`
    const oursMiss = async (tag: string, i: number, tags?: readonly string[]) => {
      const key = missKey(tag, i)
      const value = await cache.getOrSet(
        key,
        oursLoader,
        tags === undefined ? undefined : { tags: [...tags] },
      )
      if (value.sku !== PAYLOAD.sku) throw new Error(`getOrSet(${key}) answered something else`)
    }
    // The raw cache-aside: memory, then Redis, then the loader, written back to both.
    const rawMiss = async (i: number) => {
      const key = missKey('raw', i)
      let value = lru.get(key)
      if (value === undefined) {
        const text = await client.get(rawPrefix + key)
        if (text !== null) value = JSON.parse(text) as Product
        else {
          value = rawLoader()
          lru.set(key, value)
          await client.set(rawPrefix + key, JSON.stringify(value), 'PX', REDIS_TTL_MS)
        }
      }
      if (value.sku !== PAYLOAD.sku) throw new Error(`raw getOrSet(${key}) answered something else`)
    }
    const missOps: Record<Side, TimedOp> = {
      ours: { run: (i) => oursMiss('ours', i) },
      baseline: { run: rawMiss },
    }

    // delete: the key is written first (untimed), then deleted (timed), then checked gone (untimed).
    const keyOf = (i: number) => keys[i % KEY_COUNT]!
    const goneEverywhere = async (label: string, full: string, inL1: boolean) => {
      const left = await client.exists(full)
      if (left !== 0 || inL1)
        throw new Error(`delete scenario is invalid: ${label} still present after delete`)
    }
    const deleteOps: Record<Side, TimedOp> = {
      ours: {
        prepare: (i) => cache.set(keyOf(i), PAYLOAD),
        run: (i) => cache.delete(keyOf(i)),
        check: (i) => goneEverywhere(`ours ${keyOf(i)}`, layerPrefix + keyOf(i), memory.has(keyOf(i))),
      },
      baseline: {
        prepare: async (i) => {
          lru.set(keyOf(i), PAYLOAD)
          await client.set(rawPrefix + keyOf(i), JSON.stringify(PAYLOAD), 'PX', REDIS_TTL_MS)
        },
        run: async (i) => {
          lru.delete(keyOf(i))
          await client.unlink(rawPrefix + keyOf(i))
        },
        check: (i) => goneEverywhere(`raw ${keyOf(i)}`, rawPrefix + keyOf(i), lru.has(keyOf(i))),
      },
    }

    const plan = {
      warmup: Math.max(100, scaled(ctx, 400)),
      rounds: Math.max(3, scaled(ctx, 20)),
      opsPerRound: Math.max(30, scaled(ctx, 300)),
    }
    cache.resetStats()
    const missTimes = await timeOps(missOps, plan)
    const missOpsPerSide = 4 * Math.ceil(plan.warmup / 4) + plan.rounds * plan.opsPerRound
    const stats = cache.getStats()
    if (oursLoads !== missOpsPerSide || rawLoads !== missOpsPerSide || stats.loaderCalls !== missOpsPerSide) {
      throw new Error(
        `getOrSet miss scenario is invalid: ${missOpsPerSide} misses per side, but ours called its loader ` +
          `${oursLoads} times (stats ${stats.loaderCalls}), raw ${rawLoads}`,
      )
    }
    const deleteTimes = await timeOps(deleteOps, plan)

    // Round trips per call (client side) and commands per call (server side), counted after timing.
    missSeq++
    const tagged = ['t']
    const counted = {
      missOurs: await countPerCall(client, COUNTED, (i) => oursMiss('count', i)),
      missRaw: await countPerCall(client, COUNTED, rawMiss),
      missTagged: await countPerCall(client, COUNTED, (i) => oursMiss('count-tagged', i, tagged)),
      deleteOurs: await countPerCall(client, COUNTED, deleteOps.ours.run, deleteOps.ours.prepare),
      deleteRaw: await countPerCall(client, COUNTED, deleteOps.baseline.run, deleteOps.baseline.prepare),
      deleteTagged: await countPerCall(
        client,
        COUNTED,
        (i) => cache.delete(keyOf(i)),
        (i) => cache.set(keyOf(i), PAYLOAD, { tags: tagged }),
      ),
    } satisfies Record<string, PerCallTraffic>
    let server: Record<keyof typeof counted, ServerCommands> | undefined
    if (ctx.redisSpawned) {
      missSeq++
      server = {
        missOurs: await countServerCommands(client, COUNTED, (i) => oursMiss('count', i)),
        missRaw: await countServerCommands(client, COUNTED, rawMiss),
        missTagged: await countServerCommands(client, COUNTED, (i) => oursMiss('count-tagged', i, tagged)),
        deleteOurs: await countServerCommands(client, COUNTED, deleteOps.ours.run, deleteOps.ours.prepare),
        deleteRaw: await countServerCommands(
          client,
          COUNTED,
          deleteOps.baseline.run,
          deleteOps.baseline.prepare,
        ),
        deleteTagged: await countServerCommands(
          client,
          COUNTED,
          (i) => cache.delete(keyOf(i)),
          (i) => cache.set(keyOf(i), PAYLOAD, { tags: tagged }),
        ),
      }
    }
    // The raw baselines are the minimum the budgets name (2 round trips, 1): checked, so the ratio is the budget.
    if (medianTrips(counted.missRaw) !== 2 || medianTrips(counted.deleteRaw) !== 1) {
      throw new Error(
        `getOrSet miss / delete scenario is invalid: raw cache-aside took ${medianTrips(counted.missRaw)} round ` +
          `trips (expected 2), raw UNLINK ${medianTrips(counted.deleteRaw)} (expected 1)`,
      )
    }
    // The last counted misses must be in both layers (the miss path wrote back).
    const lastMiss = missKey('count', COUNTED - 1)
    if ((await countExisting(client, [layerPrefix + lastMiss])) !== 1 || !memory.has(lastMiss)) {
      throw new Error(`getOrSet miss scenario is invalid: ${lastMiss} was not written back to both layers`)
    }

    const rows: Row[] = []
    const timeRow = (scenario: string, what: string, t: Record<Side, { roundP50: number[] }>): Row => {
      const paired = pairedRatio(t.ours.roundP50, t.baseline.roundP50)
      return {
        scenario,
        metric: `p50 latency per call vs ${what}, median of ${plan.rounds} rounds`,
        ours: formatNs(median(t.ours.roundP50)),
        baseline: formatNs(median(t.baseline.roundP50)),
        ratio: paired.median,
        roundRange: paired.range,
      }
    }
    const p99Row = (scenario: string, t: Record<Side, { latencies: number[] }>): Row => {
      const o = percentile(t.ours.latencies, 99)
      const b = percentile(t.baseline.latencies, 99)
      return {
        scenario,
        metric: `p99 latency per call, all ${formatCount(t.ours.latencies.length)} calls pooled`,
        ours: formatNs(o),
        baseline: formatNs(b),
        ratio: o / b,
      }
    }
    const tripRow = (
      scenario: string,
      ours: PerCallTraffic,
      raw: PerCallTraffic,
      budget: Budget | undefined,
      note: string,
    ): Row => {
      const o = medianTrips(ours)
      const b = medianTrips(raw)
      return {
        scenario,
        metric: `Redis round trips per call${note}, median per call (client side; ours: ${describePerCall(ours)}; raw: ${describePerCall(raw)})`,
        ours: formatCount(o),
        baseline: formatCount(b),
        ratio: o / b,
        budget,
      }
    }
    const waitRow = (scenario: string, ours: PerCallTraffic, raw: PerCallTraffic, budget?: Budget): Row => {
      const o = medianWaits(ours)
      const b = medianWaits(raw)
      return {
        budget,
        scenario,
        metric:
          'Redis round trips per call counted as waits (a command sent after one of the call\u2019s replies ' +
          'arrived starts a new one; commands sent together share one, pipelined or not), median per call ' +
          `(ours: ${describeWaits(ours)}; raw: ${describeWaits(raw)})`,
        ours: formatCount(o),
        baseline: formatCount(b),
        ratio: o / b,
      }
    }
    const commandRow = (scenario: string, ours: ServerCommands, raw: ServerCommands): Row => ({
      scenario,
      metric:
        'Redis commands per call, executed by the server (INFO commandstats; ours: ' +
        `${describeServerCommands(ours)}; raw: ${describeServerCommands(raw)})`,
      ours: formatCount(median(ours.totals)),
      baseline: formatCount(median(raw.totals)),
      ratio: median(ours.totals) / median(raw.totals),
    })

    const miss = 'getOrSet miss (loader answers at once)'
    rows.push(
      waitRow(miss, counted.missOurs, counted.missRaw, { text: '≤ 2 round trips (1× raw)', maxRatio: 1 }),
      tripRow(miss, counted.missOurs, counted.missRaw, undefined, ' (requests: pipelines + lone commands)'),
      ...(server === undefined ? [] : [commandRow(miss, server.missOurs, server.missRaw)]),
      timeRow(miss, 'lru.get, GET, loader, lru.set + SET PX', missTimes),
      p99Row(miss, missTimes),
    )
    const missTagged = "getOrSet miss with tags: ['t']"
    rows.push(
      tripRow(
        missTagged,
        counted.missTagged,
        counted.missRaw,
        undefined,
        ' (vs the untagged raw cache-aside)',
      ),
      waitRow(missTagged, counted.missTagged, counted.missRaw),
      ...(server === undefined ? [] : [commandRow(missTagged, server.missTagged, server.missRaw)]),
    )
    const del = 'delete, key without dependents'
    rows.push(
      waitRow(del, counted.deleteOurs, counted.deleteRaw, { text: '1 round trip (1× raw)', maxRatio: 1 }),
      tripRow(
        del,
        counted.deleteOurs,
        counted.deleteRaw,
        undefined,
        ' (requests: pipelines + lone commands)',
      ),
      ...(server === undefined ? [] : [commandRow(del, server.deleteOurs, server.deleteRaw)]),
      timeRow(del, 'lru.delete + UNLINK', deleteTimes),
      p99Row(del, deleteTimes),
    )
    const delTagged = "delete, key written with tags: ['t']"
    rows.push(
      tripRow(delTagged, counted.deleteTagged, counted.deleteRaw, undefined, ' (vs the raw UNLINK)'),
      waitRow(delTagged, counted.deleteTagged, counted.deleteRaw),
      ...(server === undefined ? [] : [commandRow(delTagged, server.deleteTagged, server.deleteRaw)]),
    )

    return {
      rows,
      method: [
        `getOrSet miss / delete: CacheStack([MemoryLayer({ ttl: ${L1_TTL_MS}, maxSize: ${L1_MAX} }), ` +
          `RedisLayer({ client, ttl: ${REDIS_TTL_MS}, prefix })]) on one plain ioredis client, default key ` +
          'index. getOrSet miss: `await cache.getOrSet(k, loader)` on a key no layer holds (a new key every ' +
          'call), the loader returns the payload at once, so the time is the cache\u2019s own; baseline: raw ' +
          'cache-aside on `new LRUCache(…)` + the same client: lru.get, `GET`, loader, lru.set + `SET k json PX ttl` ' +
          '(2 round trips, the minimum). delete: `await cache.delete(k)` of a key written just before (untimed, ' +
          'no tags, nothing depends on it) vs lru.delete + `UNLINK` of a raw copy (1 round trip).',
        `getOrSet miss / delete: ${plan.warmup} warm-up calls per side, then ${plan.rounds} rounds × ` +
          `${plan.opsPerRound} calls per side (A B / B A), every call timed alone; p50 per round, ratio = median ` +
          'of per-round ratios (info). Round trips and commands as in the writes scenario: ' +
          `${COUNTED} further calls per variant, counted one by one after timing (client: requests the call ` +
          'wrote, attributed to it through AsyncLocalStorage; ' +
          (ctx.redisSpawned
            ? 'server: INFO commandstats delta around each call); the write before a delete is not counted. '
            : 'server: not counted, the Redis is shared (REDIS_URL)); the write before a delete is not counted. ') +
          'The budget rows count round trips as waits: a command the call sent after one of its ' +
          'replies arrived starts a new one, commands sent together share one whether pipelined or not (what ' +
          'test/round-trips.test.ts in layer-redis counts: the latency a caller waits); the "requests" rows ' +
          "(info) count pipelines and lone commands, so two commands sent side by side are two. The tagged variants (`{ tags: ['t'] }`) are counted only. Checked: every miss called its loader " +
          'once (ours and raw, and the stack stats agree), the counted misses were written back to Redis and ' +
          'memory; after every timed delete the key is gone from Redis (EXISTS) and from memory.',
      ],
    }
  } finally {
    await redisLayer.clear()
    cache.close()
    let cursor = '0'
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', `${rawPrefix}*`, 'COUNT', 1000)
      cursor = next
      if (found.length > 0) await client.unlink(...found)
    } while (cursor !== '0')
  }
}
