import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import {
  CacheStack,
  compareSequences,
  MemoryLayer,
  RedisLayer,
  WriteBehind,
  type WriteBehindEntry,
} from 'layercache'
import pg from 'pg'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { median, nowNs, orderOf, pairedRatio, percentile, sinceNs } from '../measure'
import { PAYLOAD, type Product } from '../payload'
import { formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'

/** BENCH_PG_URL, else the local server every machine of this project runs. */
const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test'
/** Connections in the pool both sides share (node-postgres' default `max`). */
const POOL_SIZE = 10
const WRITERS = 50
/** Keys each concurrent writer cycles through (its own: the last write per key is well defined). */
const KEYS_PER_WRITER = 20
/** Keys the sequential part cycles through (so writes update existing rows). */
const SEQUENTIAL_KEYS = 1000
const BATCH_SIZE = 100
const SAMPLE_EVERY_MS = 10
const SPARK = ' ▁▂▃▄▅▆▇█'

/** sync: upsert in PostgreSQL, then cache.set (the baseline); queued: WriteBehind.write() (ours). */
type Side = 'sync' | 'queued'
const SIDES: readonly Side[] = ['queued', 'sync']

type Body = Product & { readonly n: number }

interface DepthSample {
  /** ms since the round started */
  readonly at: number
  readonly depth: number
}

interface ConcurrentRound {
  readonly latencies: number[]
  readonly rate: number
  readonly requestsNs: number
  readonly dbNs: number
  readonly depth: readonly DepthSample[]
}

interface Phase {
  /** '' for the first comparison, AOF_LABEL for the one with Redis persisting every write. */
  readonly label: string
  readonly seqRounds: number
  readonly concRounds: number
  readonly seq: {
    readonly p50: Record<Side, number[]>
    readonly rate: Record<Side, number[]>
    readonly db: Record<Side, number[]>
    readonly pooled: Record<Side, number[]>
  }
  readonly conc: Record<Side, ConcurrentRound[]>
}

const AOF_LABEL = 'Redis AOF always'

/**
 * Turns AOF on (`appendfsync always`: a write is answered after its fsync) or off, waiting until the
 * rewrite that turning it on starts has finished.
 */
async function setAppendOnly(client: Redis, on: boolean): Promise<void> {
  if (on) await client.config('SET', 'appendfsync', 'always')
  await client.config('SET', 'appendonly', on ? 'yes' : 'no')
  const deadline = Date.now() + 10_000
  for (;;) {
    const info = await client.info('persistence')
    const enabled = /^aof_enabled:1/m.test(info)
    const busy = /^aof_rewrite_in_progress:1/m.test(info) || /^aof_rewrite_scheduled:1/m.test(info)
    if (enabled === on && !busy) return
    if (Date.now() > deadline) throw new Error(`Redis did not turn AOF ${on ? 'on' : 'off'} within 10 s`)
    await delay(20)
  }
}

function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable BENCH_PG_URL)'
  }
}

/** Connects, or throws one clear error saying what was tried and how to point the benchmark elsewhere. */
async function connectPostgres(url: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: 3_000 })
  // An idle connection dropped by the server must not crash the run; queries still fail loudly.
  pool.on('error', () => {})
  try {
    await pool.query('SELECT 1')
  } catch (error) {
    await pool.end().catch(() => {})
    const reason = error instanceof Error ? error.message || error.name : String(error)
    throw new Error(
      `PostgreSQL is not reachable at ${redactedUrl(url)} (${reason}). This scenario needs a PostgreSQL ` +
        'server it may create and drop a table in: start one, or set BENCH_PG_URL=postgres://user@host:port/db.',
    )
  }
  return pool
}

/** ' ▁▃▇█▅▂ ' over `width` buckets of the round (each bucket: its largest sample). */
function sparkline(samples: readonly DepthSample[], width: number): string {
  if (samples.length === 0) return ''
  const end = samples[samples.length - 1]!.at
  const max = Math.max(1, ...samples.map((s) => s.depth))
  const buckets = new Array<number>(width).fill(-1)
  for (const s of samples) {
    const b = Math.min(width - 1, Math.floor((s.at / Math.max(end, 1e-9)) * width))
    buckets[b] = Math.max(buckets[b]!, s.depth)
  }
  let last = 0
  return buckets
    .map((depth) => {
      if (depth >= 0) last = depth
      const level = last === 0 ? 0 : Math.max(1, Math.round((last / max) * (SPARK.length - 1)))
      return SPARK[level]
    })
    .join('')
}

/** The rows of one comparison, and its queue-depth line (last concurrent round). */
function rowsOf(phase: Phase, seqOps: number, concOps: number): { rows: Row[]; depthLine: string } {
  const { seq, conc, seqRounds, concRounds } = phase
  const tail = phase.label === '' ? '' : `, ${phase.label}`
  const rows: Row[] = []
  const seqName = `Write-behind, ${formatCount(seqOps)} sequential writes${tail}`
  const p50 = pairedRatio(seq.p50.queued, seq.p50.sync)
  rows.push({
    scenario: seqName,
    metric: `p50 request latency vs INSERT … ON CONFLICT + cache.set, median of ${seqRounds} rounds`,
    ours: formatNs(median(seq.p50.queued)),
    baseline: formatNs(median(seq.p50.sync)),
    ratio: p50.median,
    roundRange: p50.range,
  })
  const p99Ours = percentile(seq.pooled.queued, 99)
  const p99Sync = percentile(seq.pooled.sync, 99)
  rows.push({
    scenario: seqName,
    metric: `p99 request latency, all ${formatCount(seqRounds * seqOps)} requests pooled`,
    ours: formatNs(p99Ours),
    baseline: formatNs(p99Sync),
    ratio: p99Ours / p99Sync,
  })
  const seqRate = pairedRatio(seq.rate.queued, seq.rate.sync)
  rows.push({
    scenario: seqName,
    metric: `request throughput, median of ${seqRounds} rounds`,
    ours: formatRate(median(seq.rate.queued)),
    baseline: formatRate(median(seq.rate.sync)),
    ratio: seqRate.median,
    roundRange: seqRate.range,
  })
  const seqDb = pairedRatio(seq.db.queued, seq.db.sync)
  rows.push({
    scenario: seqName,
    metric: 'time until the table holds all writes of a round (ours: last request + flush())',
    ours: formatNs(median(seq.db.queued)),
    baseline: formatNs(median(seq.db.sync)),
    ratio: seqDb.median,
    roundRange: seqDb.range,
  })

  const concName = `Write-behind, ${WRITERS} concurrent writers${tail}`
  const roundP50 = (side: Side) => conc[side].map((r) => percentile(r.latencies, 50))
  const concP50 = pairedRatio(roundP50('queued'), roundP50('sync'))
  rows.push({
    scenario: concName,
    metric: `p50 request latency, median of ${concRounds} rounds × ${formatCount(concOps)} requests`,
    ours: formatNs(median(roundP50('queued'))),
    baseline: formatNs(median(roundP50('sync'))),
    ratio: concP50.median,
    roundRange: concP50.range,
  })
  const pooledOf = (side: Side) => conc[side].flatMap((r) => r.latencies)
  const cp99Ours = percentile(pooledOf('queued'), 99)
  const cp99Sync = percentile(pooledOf('sync'), 99)
  rows.push({
    scenario: concName,
    metric: `p99 request latency, all ${formatCount(concRounds * concOps)} requests pooled`,
    ours: formatNs(cp99Ours),
    baseline: formatNs(cp99Sync),
    ratio: cp99Ours / cp99Sync,
  })
  const rates = (side: Side) => conc[side].map((r) => r.rate)
  const concRate = pairedRatio(rates('queued'), rates('sync'))
  rows.push({
    scenario: concName,
    metric: `request throughput, median of ${concRounds} rounds`,
    ours: formatRate(median(rates('queued'))),
    baseline: formatRate(median(rates('sync'))),
    ratio: concRate.median,
    roundRange: concRate.range,
  })
  const dbTimes = (side: Side) => conc[side].map((r) => r.dbNs)
  const concDb = pairedRatio(dbTimes('queued'), dbTimes('sync'))
  rows.push({
    scenario: concName,
    metric: 'time until the table holds all writes of a round (ours: last request + flush())',
    ours: formatNs(median(dbTimes('queued'))),
    baseline: formatNs(median(dbTimes('sync'))),
    ratio: concDb.median,
    roundRange: concDb.range,
  })
  const drains = conc.queued.map((r) => r.dbNs - r.requestsNs)
  const depthOf = (r: ConcurrentRound) => r.depth.filter((s) => s.depth >= 0)
  const maxDepths = conc.queued.map((r) => Math.max(0, ...depthOf(r).map((s) => s.depth)))
  const atRequestsEnd = conc.queued.map((r) => {
    const mark = r.depth.findIndex((s) => s.depth < 0)
    return mark > 0 ? r.depth[mark - 1]!.depth : 0
  })
  rows.push({
    scenario: concName,
    metric:
      `queue depth (XLEN every ~${SAMPLE_EVERY_MS} ms): max per round ${maxDepths.map(formatCount).join(' / ')}; ` +
      `at the last request ${atRequestsEnd.map(formatCount).join(' / ')}; flush() then took ` +
      drains.map(formatNs).join(' / '),
    ours: `max ${formatCount(Math.max(...maxDepths))}`,
    baseline: '—',
    ratio: Number.NaN,
  })

  // The depth over time of the last concurrent round, for the terminal and the report.
  const last = conc.queued[conc.queued.length - 1]!
  const samples = depthOf(last)
  const every =
    samples.length > 1 ? (samples[samples.length - 1]!.at - samples[0]!.at) / (samples.length - 1) : 0
  const picks = [0.1, 0.25, 0.5, 0.75, 0.9].map((f) => samples[Math.floor(f * (samples.length - 1))]!)
  const depthLine =
    `queue depth${tail}, last concurrent round (${formatCount(samples.length)} samples, one per ` +
    `${every.toFixed(1)} ms on average; last request at ${(last.requestsNs / 1e6).toFixed(0)} ms, drained at ` +
    `${(last.dbNs / 1e6).toFixed(0)} ms, max ${formatCount(Math.max(0, ...samples.map((s) => s.depth)))}): ` +
    `[${sparkline(samples, 48)}] samples ` +
    picks.map((s) => `${s.at.toFixed(0)} ms: ${formatCount(s.depth)}`).join(', ')
  return { rows, depthLine }
}

/**
 * Write-behind vs synchronous database writes, on one PostgreSQL table per side. Baseline: each request
 * upserts its row (`INSERT … ON CONFLICT (id) DO UPDATE`, autocommit) and then `cache.set`s it. Ours:
 * `WriteBehind.write()` (queue the write in a Redis Stream, then `cache.set`), with a consumer in the same
 * process whose writer upserts each batch with one multi-row INSERT. Sequential requests and 50 concurrent
 * writers; per request latency and throughput, time until the table holds every write, and the queue depth.
 */
export async function writeBehind(ctx: BenchContext): Promise<ScenarioResult> {
  const url = process.env.BENCH_PG_URL || DEFAULT_PG_URL
  const pool = await connectPostgres(url)
  const version = ((await pool.query('SHOW server_version')).rows[0] as { server_version: string })
    .server_version
  const syncCommit = ((await pool.query('SHOW synchronous_commit')).rows[0] as { synchronous_commit: string })
    .synchronous_commit
  const base = `lc_bench_wb_${process.pid}_${randomBytes(4).toString('hex')}`
  const table: Record<Side, string> = { sync: `${base}_sync`, queued: `${base}_queued` }
  const prefixOf = (side: Side) => `${ctx.prefix}wb:${side}:`
  const layers: Record<Side, RedisLayer> = {
    sync: new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: prefixOf('sync') }),
    queued: new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: prefixOf('queued') }),
  }
  const caches: Record<Side, CacheStack> = {
    sync: new CacheStack([new MemoryLayer({ ttl: 60_000, maxSize: 10_000 }), layers.sync]),
    queued: new CacheStack([new MemoryLayer({ ttl: 60_000, maxSize: 10_000 }), layers.queued]),
  }

  const batchSizes: number[] = []
  let rowsWritten = 0
  let entriesSeen = 0
  const writer = async (entries: readonly WriteBehindEntry<Body>[]): Promise<void> => {
    // One statement per batch. A key twice in one INSERT … ON CONFLICT DO UPDATE is an error ("cannot
    // affect row a second time"), so keep each key's newest entry; the WHERE keeps a redelivered older
    // entry from overwriting a newer row (at-least-once delivery, batches of other consumers).
    const newest = new Map<string, WriteBehindEntry<Body>>()
    for (const entry of entries) {
      const seen = newest.get(entry.key)
      if (seen === undefined || compareSequences(seen.sequence, entry.sequence) < 0)
        newest.set(entry.key, entry)
    }
    const rows = [...newest.values()]
    const seq = rows.map((entry) => entry.sequence.split('-'))
    await pool.query(
      `INSERT INTO ${table.queued} AS t (id, body, write_id, stream_ms, stream_seq)
       SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::bigint[], $5::bigint[])
       ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, write_id = EXCLUDED.write_id,
         stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq, updated_at = now()
       WHERE (t.stream_ms, t.stream_seq) < (EXCLUDED.stream_ms, EXCLUDED.stream_seq)`,
      [
        rows.map((entry) => entry.key),
        rows.map((entry) => JSON.stringify(entry.value)),
        rows.map((entry) => entry.id),
        seq.map((parts) => parts[0]!),
        seq.map((parts) => parts[1]!),
      ],
    )
    entriesSeen += entries.length
    rowsWritten += rows.length
    batchSizes.push(entries.length)
  }
  const queue = new WriteBehind<Body>({
    cache: caches.queued,
    client: ctx.client,
    queue: `${ctx.prefix}orders`,
    writer,
    batchSize: BATCH_SIZE,
    // Generous: back-pressure is not what this scenario measures (it reports the depth instead).
    maxQueueLength: 1_000_000,
  })
  const errors: unknown[] = []
  queue.on('error', ({ error }) => errors.push(error))
  const syncUpsert =
    `INSERT INTO ${table.sync} (id, body, write_id) VALUES ($1, $2, $3) ` +
    'ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, write_id = EXCLUDED.write_id, updated_at = now()'

  try {
    for (const side of SIDES) {
      await pool.query(
        `CREATE TABLE ${table[side]} (id text PRIMARY KEY, body jsonb NOT NULL, write_id text NOT NULL,
           stream_ms bigint, stream_seq bigint, updated_at timestamptz NOT NULL DEFAULT now())`,
      )
    }
    queue.start()

    // What each table must end with: key → the `n` of the last write of it.
    const expected: Record<Side, Map<string, number>> = { sync: new Map(), queued: new Map() }
    const counter: Record<Side, number> = { sync: 0, queued: 0 }
    const write: Record<Side, (key: string, n: number) => Promise<void>> = {
      sync: async (key, n) => {
        const body: Body = { ...PAYLOAD, n }
        await pool.query(syncUpsert, [key, JSON.stringify(body), `sync-${n}`])
        await caches.sync.set(key, body)
      },
      queued: async (key, n) => {
        await queue.write(key, { ...PAYLOAD, n })
      },
    }

    // Sequential: one request at a time, every request timed alone.
    const seqAt: Record<Side, number> = { sync: 0, queued: 0 }
    const sequential = async (side: Side, ops: number, latencies: number[] | undefined) => {
      let j = seqAt[side]
      for (let i = 0; i < ops; i++) {
        const key = `order:s${j}`
        const n = ++counter[side]
        expected[side].set(key, n)
        const t0 = nowNs()
        await write[side](key, n)
        latencies?.push(sinceNs(t0))
        if (++j === SEQUENTIAL_KEYS) j = 0
      }
      seqAt[side] = j
    }

    // Concurrent: WRITERS loops, each writing its own keys one request at a time.
    const writerAt: Record<Side, number[]> = {
      sync: new Array<number>(WRITERS).fill(0),
      queued: new Array<number>(WRITERS).fill(0),
    }
    const concurrent = async (side: Side, perWriter: number, latencies: number[] | undefined) => {
      await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          for (let i = 0; i < perWriter; i++) {
            const key = `order:c${w}-${writerAt[side][w]! % KEYS_PER_WRITER}`
            writerAt[side][w]!++
            const n = ++counter[side]
            expected[side].set(key, n)
            const t0 = nowNs()
            await write[side](key, n)
            latencies?.push(sinceNs(t0))
          }
        }),
      )
    }

    // Warm-up (connections, JIT, the consumer group), then the queue is drained before timing starts.
    for (let w = 0; w < 4; w++) {
      for (const side of orderOf(SIDES, w)) {
        await sequential(side, 50, undefined)
        await concurrent(side, 2, undefined)
      }
    }
    await queue.flush()

    const seqOps = scaled(ctx, 300)
    const perWriter = Math.max(2, scaled(ctx, 80))
    const concOps = perWriter * WRITERS

    /** One comparison: sequential rounds, then concurrent rounds, both sides alternating A B / B A. */
    const measure = async (label: string, seqRounds: number, concRounds: number): Promise<Phase> => {
      const seq: Phase['seq'] = {
        p50: { sync: [], queued: [] },
        rate: { sync: [], queued: [] },
        db: { sync: [], queued: [] },
        pooled: { sync: [], queued: [] },
      }
      for (let round = 0; round < seqRounds; round++) {
        for (const side of orderOf(SIDES, round)) {
          const latencies: number[] = []
          const start = nowNs()
          await sequential(side, seqOps, latencies)
          const requestsNs = sinceNs(start)
          // The baseline's table is complete when its last request returns; ours once the queue is drained.
          if (side === 'queued') await queue.flush()
          seq.db[side].push(sinceNs(start))
          seq.rate[side].push(seqOps / (requestsNs / 1e9))
          seq.p50[side].push(percentile(latencies, 50))
          seq.pooled[side].push(...latencies)
        }
      }
      const conc: Record<Side, ConcurrentRound[]> = { sync: [], queued: [] }
      for (let round = 0; round < concRounds; round++) {
        for (const side of orderOf(SIDES, round)) {
          const latencies: number[] = []
          const depth: DepthSample[] = []
          let sampling = side === 'queued'
          const start = nowNs()
          // XLEN every ~10 ms on the other client (entries queued and not yet written, in-flight batch included).
          const sampler = (async () => {
            while (sampling) {
              const at = sinceNs(start) / 1e6
              depth.push({ at, depth: await ctx.pipelinedClient.xlen(queue.streamKey) })
              await delay(SAMPLE_EVERY_MS)
            }
          })()
          await concurrent(side, perWriter, latencies)
          const requestsNs = sinceNs(start)
          if (side === 'queued') {
            depth.push({ at: requestsNs / 1e6, depth: -1 }) // marks "last request returned"
            await queue.flush()
          }
          const dbNs = sinceNs(start)
          sampling = false
          await sampler
          conc[side].push({ latencies, rate: concOps / (requestsNs / 1e9), requestsNs, dbNs, depth })
        }
      }
      return { label, seqRounds, concRounds, seq, conc }
    }

    const phases: Phase[] = [await measure('', Math.max(2, scaled(ctx, 6)), Math.max(2, scaled(ctx, 4)))]
    // The same with the durability the docs ask for: every write acknowledged only after Redis' fsync. Only
    // on the throwaway server this run started (never reconfigure a shared REDIS_URL server).
    let aofNote =
      'not measured: the Redis is not one this run started (REDIS_URL), so its config was left alone'
    if (ctx.redisSpawned) {
      await setAppendOnly(ctx.client, true)
      try {
        phases.push(await measure(AOF_LABEL, Math.max(2, scaled(ctx, 4)), Math.max(1, scaled(ctx, 2))))
      } finally {
        await setAppendOnly(ctx.client, false)
      }
      aofNote =
        'measured a second time after `CONFIG SET appendonly yes` + `appendfsync always` on the throwaway ' +
        'redis-server (rows marked "AOF always"; the cache writes of both sides are fsynced too)'
    }

    // The tables must hold exactly the last write of every key, nothing more, nothing less.
    const stats = queue.stats()
    const problems: string[] = []
    for (const side of SIDES) {
      const { rows } = await pool.query<{ id: string; n: number }>(
        `SELECT id, (body->>'n')::int AS n FROM ${table[side]}`,
      )
      const want = expected[side]
      if (rows.length !== want.size) problems.push(`${side}: ${rows.length} rows, expected ${want.size}`)
      let wrong = 0
      for (const row of rows) if (want.get(row.id) !== row.n) wrong++
      if (wrong > 0) problems.push(`${side}: ${wrong} rows do not hold the last write of their key`)
      for (const key of ['order:s0', `order:c${WRITERS - 1}-0`]) {
        const cached = await caches[side].get<Body>(key)
        if (cached?.n !== want.get(key))
          problems.push(`${side}: the cache does not hold the last write of ${key}`)
      }
    }
    const left = await ctx.client.xlen(queue.streamKey)
    if (left !== 0) problems.push(`queued: ${left} entries left in the stream`)
    if (stats.deadLettered !== 0 || stats.retries !== 0) {
      problems.push(`queued: ${stats.retries} retries, ${stats.deadLettered} dead letters (expected none)`)
    }
    if (stats.queued !== counter.queued) problems.push(`queued: ${stats.queued} queued of ${counter.queued}`)
    if (entriesSeen !== counter.queued) {
      problems.push(`queued: the writer saw ${entriesSeen} entries for ${counter.queued} writes`)
    }
    if (errors.length > 0) problems.push(`queued: ${errors.length} error events, first: ${String(errors[0])}`)
    if (problems.length > 0) throw new Error(`write-behind scenario is invalid: ${problems.join('; ')}`)

    // Rows.
    const rows: Row[] = []
    const depthLines: string[] = []
    for (const phase of phases) {
      const { rows: phaseRows, depthLine } = rowsOf(phase, seqOps, concOps)
      rows.push(...phaseRows)
      depthLines.push(depthLine)
      process.stderr.write(`  ${depthLine}\n`)
    }
    rows.push({
      scenario: 'Write-behind, whole run',
      metric:
        `writer calls (one multi-row INSERT each): entries per batch p50 ${percentile(batchSizes, 50)}, ` +
        `max ${Math.max(...batchSizes)}; rows upserted ${formatCount(rowsWritten)} of ` +
        `${formatCount(entriesSeen)} entries (same key twice in a batch: newest kept)`,
      ours: `${formatCount(batchSizes.length)} INSERTs`,
      baseline: `${formatCount(counter.sync)} INSERTs`,
      ratio: batchSizes.length / counter.sync,
    })

    return {
      rows,
      method: [
        `Write-behind: PostgreSQL ${version} (${redactedUrl(url)}, synchronous_commit=${syncCommit}), one table ` +
          `per side (id text PRIMARY KEY, body jsonb, …), one pg.Pool of ${POOL_SIZE} connections shared by both ` +
          'sides; CacheStack([MemoryLayer, RedisLayer]) per side on the plain client. Baseline request: ' +
          '`INSERT … VALUES ($1,$2,$3) ON CONFLICT (id) DO UPDATE` (autocommit), then `cache.set`. Ours: ' +
          `\`WriteBehind.write()\` (XADD script, then cache.set), the consumer running in the same process ` +
          `(batchSize ${BATCH_SIZE}, pollIntervalMs 50), its writer one \`INSERT … SELECT FROM unnest(…) ON ` +
          'CONFLICT (id) DO UPDATE … WHERE older stream id` per batch.',
        `Write-behind: warm-up 4 × (50 sequential + ${WRITERS} × 2 concurrent) writes per side, then per ` +
          `comparison rounds of ${formatCount(seqOps)} sequential writes over ${formatCount(SEQUENTIAL_KEYS)} keys ` +
          `(${phases.map((p) => p.seqRounds).join(' / ')} rounds) and rounds of ${WRITERS} writers × ${perWriter} ` +
          `writes, each writer its own ${KEYS_PER_WRITER} keys (${phases.map((p) => p.concRounds).join(' / ')} ` +
          'rounds), sides alternating A B / B A; every request timed alone. "Time until the table holds all ' +
          'writes": the round\u2019s wall time, for ours including `flush()` after the last request. Checked ' +
          'after timing: each table holds exactly the last write of every key, the stream is empty, no ' +
          'retries or dead letters; then both tables are dropped and the Redis keys deleted.',
        `Write-behind with Redis persisting every write: ${aofNote}.`,
        ...depthLines.map((line) => `Write-behind: ${line}`),
      ],
    }
  } finally {
    await queue.close({ drain: false }).catch(() => {})
    await ctx.client.del(queue.streamKey, queue.deadLetterKey).catch(() => {})
    for (const side of SIDES) await layers[side].clear().catch(() => {})
    try {
      for (const side of SIDES) await pool.query(`DROP TABLE IF EXISTS ${table[side]}`)
    } finally {
      await pool.end()
    }
  }
}
