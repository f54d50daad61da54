import type { Redis } from 'ioredis'
import { EntityCache } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternate, median, nowNs, pairedRatio, percentile, type Side, sinceNs } from '../measure'
import { formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'
import { countTraffic, describeTraffic, roundTrips, type Traffic } from '../traffic'

/**
 * How many tracked lists hold the invalidated row, and sequential invalidations per side per round at
 * BENCH_SCALE=1 (every invalidation is preceded by an untimed re-seed that puts the row back).
 * 0 lists: `invalidateEntity` of a row no list holds vs a plain `DEL` of it.
 */
const SIZES = [
  { lists: 0, ops: 300 },
  { lists: 1, ops: 200 },
  { lists: 10, ops: 100 },
  { lists: 100, ops: 30 },
] as const
const ROUNDS = 10
/** Rows per list: the invalidated row plus LIST_ROWS - 1 rows of that list only. */
const LIST_ROWS = 50
const MAX_SIZE = 100
const TARGET_ID = 'target'

interface Post {
  readonly id: string
  readonly list: number
  readonly title: string
  readonly createdAt: number
}

/**
 * The "database": an in-process array of rows indexed by list (a query is one Map lookup plus a filter
 * and a sort, no network), so the baseline's re-queries cost it as little as they possibly can.
 */
class InProcessDb {
  readonly target: Post = { id: TARGET_ID, list: -1, title: 'the invalidated row', createdAt: 1e12 }
  targetAlive = true
  private readonly byList = new Map<number, Post[]>()

  constructor(lists: number) {
    for (let i = 0; i < lists; i++) {
      const rows: Post[] = [this.target]
      for (let j = 1; j < LIST_ROWS; j++) {
        rows.push({ id: `${i}-${j}`, list: i, title: `post ${j} of list ${i}`, createdAt: 1e9 + j })
      }
      this.byList.set(i, rows)
    }
  }

  /** `SELECT … WHERE list = $1 ORDER BY created_at DESC LIMIT maxSize` */
  query(list: number): Post[] {
    return (this.byList.get(list) ?? [])
      .filter((row) => row !== this.target || this.targetAlive)
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, MAX_SIZE)
  }
}

interface SizeResult {
  readonly lists: number
  readonly rounds: number
  readonly opsPerRound: number
  /** ops/s per round (timed ops only). */
  readonly rate: Record<Side, number[]>
  /** Every timed call, ns. */
  readonly latencies: Record<Side, number[]>
  readonly traffic: Record<Side, Traffic>
}

async function runSize(ctx: BenchContext, lists: number, rounds: number, opsPerRound: number) {
  const client: Redis = ctx.client
  const db = new InProcessDb(lists)
  const oursPrefix = `${ctx.prefix}ent${lists}:ours:`
  const rawPrefix = `${ctx.prefix}ent${lists}:raw:`
  const cache = new EntityCache({
    redis: client,
    keyPrefix: oursPrefix,
    entities: { post: { id: 'id', ttl: REDIS_TTL_MS } },
    lists: {
      feed: {
        kind: 'indexed',
        entity: 'post',
        score: 'createdAt',
        maxSize: MAX_SIZE,
        ttl: REDIS_TTL_MS,
        trackMembership: true,
        load: ({ list }) => db.query(Number(list)),
      },
    },
  })
  // The documented Redis layout (docs/entities.md): e:{type:id} is the row, l:{name:params} a list.
  const ourRow = `${oursPrefix}e:{post:${TARGET_ID}}`
  const ourList = (i: number) => `${oursPrefix}l:{feed:list=${i}}`
  const rawRow = `${rawPrefix}post:${TARGET_ID}`
  const rawList = (i: number) => `${rawPrefix}feed:${i}`
  const listIndexes = Array.from({ length: lists }, (_, i) => i)
  const targetJson = JSON.stringify(db.target)

  /** Where the target is: [row exists, lists holding it, total ids in those lists]. */
  const census = async (side: Side): Promise<[number, number, number]> => {
    const pipe = client.pipeline()
    pipe.exists(side === 'ours' ? ourRow : rawRow)
    for (const i of listIndexes) {
      const key = side === 'ours' ? ourList(i) : rawList(i)
      pipe.zscore(key, TARGET_ID)
      pipe.zcard(key)
    }
    const replies = (await pipe.exec()) ?? []
    let holding = 0
    let ids = 0
    replies.forEach(([error, reply], k) => {
      if (error) throw error
      if (k === 0) return
      if (k % 2 === 1) holding += reply === null ? 0 : 1
      else ids += Number(reply)
    })
    return [Number(replies[0]?.[1]), holding, ids]
  }
  const expectCensus = async (side: Side, present: boolean) => {
    const [row, holding, ids] = await census(side)
    const want = present ? [1, lists, lists * LIST_ROWS] : [0, 0, lists * (LIST_ROWS - 1)]
    if (row !== want[0] || holding !== want[1] || ids !== want[2]) {
      throw new Error(
        `entity invalidation is invalid: ${side}, row ${present ? 'seeded' : 'invalidated'}: row exists ` +
          `${row}, in ${holding} of ${lists} lists, ${ids} ids in them (expected ${want.join(', ')})`,
      )
    }
  }

  // Untimed: put the row back (the database has it again, Redis holds it in every list).
  const reseed: Record<Side, () => Promise<void>> = {
    ours: async () => {
      db.targetAlive = true
      if (lists === 0) await cache.setEntity('post', db.target)
      else {
        const added = await Promise.all(
          listIndexes.map((i) => cache.addToList('feed', { list: i }, db.target)),
        )
        if (!added.every(Boolean)) throw new Error('addToList refused to re-seed a cached list')
      }
    },
    baseline: async () => {
      db.targetAlive = true
      const pipe = client.pipeline()
      pipe.set(rawRow, targetJson, 'PX', REDIS_TTL_MS)
      for (const i of listIndexes) pipe.zadd(rawList(i), db.target.createdAt, TARGET_ID)
      await pipe.exec()
    },
  }
  // Timed: the row was deleted from the database just before (untimed); now the cache.
  const run: Record<Side, () => Promise<void>> = {
    ours: async () => {
      const removed = await cache.invalidateEntity('post', TARGET_ID)
      if (removed !== lists + 1)
        throw new Error(`invalidateEntity returned ${removed}, expected ${lists + 1}`)
    },
    // What a user without membership tracking writes, at its best: the row key and every list that might
    // hold the row, rebuilt from the database (DEL + ZADD of the query result + PEXPIRE), in one pipeline.
    baseline: async () => {
      const pipe = client.pipeline()
      pipe.del(rawRow)
      for (const i of listIndexes) {
        const rows = db.query(i)
        const key = rawList(i)
        pipe.del(key)
        pipe.zadd(key, ...rows.flatMap((row) => [row.createdAt, row.id]))
        pipe.pexpire(key, REDIS_TTL_MS)
      }
      const replies = (await pipe.exec()) ?? []
      if (replies.length !== 1 + 3 * lists) throw new Error(`baseline got ${replies.length} replies`)
      for (const [error] of replies) if (error) throw error
    },
  }

  try {
    // Seed: every list built once (ours through its rebuild path, the baseline by hand).
    for (const i of listIndexes) {
      const page = await cache.getListPage('feed', { list: i }, { limit: 1 })
      if (page?.total !== LIST_ROWS) throw new Error(`seeding list ${i} gave ${page?.total} ids`)
    }
    for (const i of listIndexes) {
      await client.zadd(rawList(i), ...db.query(i).flatMap((row) => [row.createdAt, row.id]))
    }
    for (const side of ['ours', 'baseline'] as const) {
      await reseed[side]()
      await expectCensus(side, true)
    }

    const once = async (side: Side, latencies: number[] | undefined, counted?: (t: Traffic) => void) => {
      await reseed[side]()
      await expectCensus(side, true)
      db.targetAlive = false
      const counter = counted === undefined ? undefined : countTraffic(client)
      let elapsed: number
      try {
        const t0 = nowNs()
        await run[side]()
        elapsed = sinceNs(t0)
      } finally {
        counter?.stop()
      }
      if (counter !== undefined) counted?.(counter.traffic)
      latencies?.push(elapsed)
      await expectCensus(side, false)
      return elapsed
    }

    // Warm-up (scripts loaded, JIT), then the rounds.
    const warmup = Math.max(5, Math.round(opsPerRound / 5))
    for (let w = 0; w < warmup; w++)
      for (const side of ['ours', 'baseline'] as const) await once(side, undefined)
    const rate: Record<Side, number[]> = { ours: [], baseline: [] }
    const latencies: Record<Side, number[]> = { ours: [], baseline: [] }
    await alternate(rounds, async (side) => {
      let total = 0
      for (let op = 0; op < opsPerRound; op++) total += await once(side, latencies[side])
      rate[side].push(opsPerRound / (total / 1e9))
    })
    const traffic: Partial<Record<Side, Traffic>> = {}
    for (const side of ['ours', 'baseline'] as const) {
      await once(side, undefined, (t) => {
        traffic[side] = t
      })
    }
    const result: SizeResult = {
      lists,
      rounds,
      opsPerRound,
      rate,
      latencies,
      traffic: { ours: traffic.ours!, baseline: traffic.baseline! },
    }
    return result
  } finally {
    cache.close()
  }
}

/**
 * invalidateEntity of a row held in 0 / 1 / 10 / 100 tracked indexed lists (one EntityCache, its default
 * L1) against what a user without membership tracking would write: DEL the row, and rebuild every list
 * that might hold it from the database. Single Redis, one caller, the same plain client on both sides.
 */
export async function entityInvalidation(ctx: BenchContext): Promise<ScenarioResult> {
  const rows: Row[] = []
  const plans: string[] = []
  const rounds = Math.max(2, Math.round(ROUNDS * Math.min(1, ctx.scale)))
  for (const size of SIZES) {
    const opsPerRound = scaled(ctx, size.ops)
    const r = await runSize(ctx, size.lists, rounds, opsPerRound)
    const scenario =
      r.lists === 0
        ? 'Entity invalidation, row in no list'
        : `Entity invalidation, row in ${r.lists} list${r.lists === 1 ? '' : 's'}`
    const versus =
      r.lists === 0 ? 'invalidateEntity vs DEL' : 'invalidateEntity vs DEL + rebuild of every list'
    const paired = pairedRatio(r.rate.ours, r.rate.baseline)
    rows.push({
      scenario,
      metric: `throughput, 1 caller, ${versus}, median of ${rounds} rounds`,
      ours: formatRate(median(r.rate.ours)),
      baseline: formatRate(median(r.rate.baseline)),
      ratio: paired.median,
      roundRange: paired.range,
    })
    for (const p of [50, 99]) {
      const o = percentile(r.latencies.ours, p)
      const b = percentile(r.latencies.baseline, p)
      rows.push({
        scenario,
        metric: `p${p} latency, ${versus}, ${formatCount(r.latencies.ours.length)} calls per side`,
        ours: formatNs(o),
        baseline: formatNs(b),
        ratio: o / b,
      })
    }
    const ours = roundTrips(r.traffic.ours)
    const base = roundTrips(r.traffic.baseline)
    rows.push({
      scenario,
      metric:
        'Redis round trips per call (pipelines + commands outside a pipeline, counted on the client): ' +
        `ours ${describeTraffic(r.traffic.ours)}; baseline ${describeTraffic(r.traffic.baseline)}`,
      ours: formatCount(ours),
      baseline: formatCount(base),
      ratio: ours / base,
    })
    plans.push(`${r.lists} lists: ${rounds} rounds × ${formatCount(r.opsPerRound)} calls per side`)
  }
  return {
    rows,
    method: [
      'Entity invalidation: ours = `await entities.invalidateEntity("post", id)` on an EntityCache (its ' +
        'default L1, one MemoryLayer; no bus) over the plain client, the row held in N indexed lists ' +
        `(\`trackMembership: true\`, ${LIST_ROWS} ids each, maxSize ${MAX_SIZE}); it must return N + 1. ` +
        'Baseline = what a user without membership tracking writes, at its best: one pipeline of `DEL row` ' +
        'plus, for each of the N lists that might hold the row, `DEL list`, `ZADD list` of the rows a ' +
        're-query of the database returns, `PEXPIRE list`. The "database" is an in-process array indexed by ' +
        'list (a query costs a Map lookup, a filter and a sort: a real database would add a query per list ' +
        'to the baseline). Row in no list: invalidateEntity vs `DEL row`. Single Redis, one caller, same ' +
        'plain ioredis client on both sides.',
      `Entity invalidation: ${plans.join('; ')}, A B / B A order after a warm-up; before every call the ` +
        'row is put back untimed (ours: `addToList` to each list, or `setEntity` with no list; baseline: ' +
        '`SET` + `ZADD` in one pipeline) and checked to be in Redis and in all N lists; after every call ' +
        'checked gone from Redis and from every list, with the other ids untouched. Throughput per round = ' +
        'calls / their summed time; ratio = median of per-round ratios (higher is better); p50/p99 over ' +
        'every timed call of a side. Round trips counted on the client during one further call per side.',
    ],
  }
}
