import { setTimeout as delay, setImmediate as nextMacrotask } from 'node:timers/promises'
import { CacheStack, type CacheStackOptions, type CacheStats, MemoryLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import type { BenchContext } from '../context'
import { alternateAmong, consume, median, nowNs, pairedRatio, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatCount, formatNs, formatRatio, type Row, type ScenarioResult } from '../report'

const HOT_KEYS = 10
const CONCURRENCY = 200
const TTL_MS = 50
const LOAD_MS = 5
const SWR_MS = 1000
const REFRESH_AHEAD = 0.8

const SIDES = ['none', 'singleFlight', 'swr', 'swrAhead'] as const
type StormSide = (typeof SIDES)[number]

const OURS: Record<
  Exclude<StormSide, 'none'>,
  { label: string; short: string; options: CacheStackOptions }
> = {
  singleFlight: { label: 'single-flight (ttl only)', short: 'single-flight', options: { ttl: TTL_MS } },
  swr: {
    label: 'staleWhileRevalidate',
    short: 'SWR',
    options: { ttl: TTL_MS, staleWhileRevalidate: SWR_MS },
  },
  swrAhead: {
    label: 'staleWhileRevalidate + refreshAhead',
    short: 'SWR + refreshAhead',
    options: { ttl: TTL_MS, staleWhileRevalidate: SWR_MS, refreshAhead: REFRESH_AHEAD },
  },
}

/** One side's cache for one round: fresh every round, so no round inherits another's entries. */
interface Target {
  read(key: string): Promise<Product>
  loaderCalls(): number
  stats(): CacheStats | undefined
  resetStats(): void
}

/** The simulated database: every call counts, and answers after LOAD_MS. */
function database() {
  let calls = 0
  const load = async (): Promise<Product> => {
    calls++
    await delay(LOAD_MS)
    return PAYLOAD
  }
  return { load, calls: () => calls }
}

function targetOf(side: StormSide): Target {
  const db = database()
  if (side === 'none') {
    // Naive cache-aside: get → miss → await the loader → set. Every caller that misses loads.
    const lru = new LRUCache<string, Product>({ max: 1000, ttl: TTL_MS })
    return {
      read: async (key) => {
        const hit = lru.get(key)
        if (hit !== undefined) return hit
        const value = await db.load()
        lru.set(key, value)
        return value
      },
      loaderCalls: db.calls,
      stats: () => undefined,
      resetStats: () => {},
    }
  }
  const cache = new CacheStack([new MemoryLayer({ maxSize: 1000 })], OURS[side].options)
  return {
    read: (key) => cache.getOrSet(key, db.load),
    loaderCalls: db.calls,
    stats: () => cache.getStats(),
    resetStats: () => cache.resetStats(),
  }
}

interface RoundResult {
  readonly loaderPerSec: number
  readonly requestsPerSec: number
  /** Share of requests that took ≥ SLOW_NS (waited for a database call, or sat through a GC pause). */
  readonly waitedShare: number
  readonly max: number
  readonly loaderCalls: number
  /** The database's call count when the clock started (the fill's calls), for the settled cross-check. */
  readonly callsBefore: number
  readonly requests: number
  readonly waited: number
  readonly stats: CacheStats | undefined
}

/** A hit answers in microseconds and a load takes LOAD_MS: a request this slow waited for one (or for GC). */
const SLOW_NS = 1_000_000

/**
 * Fills the HOT_KEYS keys together (so they expire together: the storm), then runs CONCURRENCY workers,
 * each a closed loop of requests: wait for the next macrotask (as a request arriving over I/O would),
 * read a hot key (global round-robin), time it. New requests stop at the deadline; the round ends when
 * the last one in flight has its answer. Only what happens after the fill is counted.
 */
async function drive(target: Target, durationMs: number): Promise<RoundResult> {
  const keys = makeKeys(HOT_KEYS)
  await Promise.all(keys.map((key) => target.read(key)))
  const callsBefore = target.loaderCalls()
  target.resetStats()
  let next = 0
  let requests = 0
  let waited = 0
  let max = 0
  let id = 0
  const start = nowNs()
  const end = start + BigInt(Math.round(durationMs * 1e6))
  const worker = async () => {
    for (;;) {
      await nextMacrotask()
      const t0 = nowNs()
      if (t0 >= end) return
      const key = keys[next]!
      if (++next === HOT_KEYS) next = 0
      const value = await target.read(key)
      const ns = sinceNs(t0)
      requests++
      if (ns >= SLOW_NS) waited++
      if (ns > max) max = ns
      id += value.id
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const elapsedS = sinceNs(start) / 1e9
  const loaderCalls = target.loaderCalls() - callsBefore
  consume(id)
  return {
    loaderPerSec: loaderCalls / elapsedS,
    requestsPerSec: requests / elapsedS,
    waitedShare: waited / requests,
    max,
    loaderCalls,
    callsBefore,
    requests,
    waited,
    stats: target.stats(),
  }
}

function formatShare(share: number): string {
  return share === 0 ? '0 %' : `${(share * 100).toPrecision(2)} %`
}

function formatPerSec(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(2)} M/s`
  if (n >= 10_000) return `${(n / 1000).toFixed(1)} k/s`
  return `${formatCount(Math.round(n))}/s`
}

/**
 * Scenario 5: a hot-key expiry storm. CONCURRENCY requests stay in flight over HOT_KEYS keys with a
 * TTL_MS lifetime in front of a LOAD_MS "database"; how often does the database get called, and how
 * many requests are served, with no protection (naive cache-aside on lru-cache) and with getOrSet?
 */
export async function expiryStorm(ctx: BenchContext): Promise<ScenarioResult> {
  const rounds = Math.max(2, Math.round(4 * ctx.scale))
  const roundMs = Math.max(100, Math.round(500 * Math.min(1, ctx.scale)))
  const warmupMs = Math.min(roundMs, 200)
  const results = Object.fromEntries(SIDES.map((side) => [side, [] as RoundResult[]])) as Record<
    StormSide,
    RoundResult[]
  >
  const runRound = async (side: StormSide, ms: number): Promise<RoundResult> => {
    const target = targetOf(side)
    const result = await drive(target, ms)
    // Let background refreshes still running finish before the next side starts (not counted).
    await delay(LOAD_MS * 4)
    // Cross-check once settled: the stack counts a call just before the loader body runs.
    const settled = target.stats()
    const calls = target.loaderCalls() - result.callsBefore
    if (settled !== undefined && settled.loaderCalls !== calls) {
      throw new Error(
        `expiry storm is invalid: ${side}'s database counted ${calls} calls, the stack ${settled.loaderCalls}`,
      )
    }
    if (settled !== undefined && settled.loaderErrors > 0) {
      throw new Error(`expiry storm is invalid: ${side} saw ${settled.loaderErrors} loader errors`)
    }
    // The round outlasts several TTLs: every side must have had to reload, or there was no storm.
    if (result.loaderCalls === 0 || result.requests === 0) {
      throw new Error(
        `expiry storm is invalid: ${side} made ${result.loaderCalls} loader calls for ${result.requests} requests`,
      )
    }
    return result
  }
  for (const side of SIDES) await runRound(side, warmupMs)
  await alternateAmong(SIDES, rounds, async (side) => {
    results[side].push(await runRound(side, roundMs))
  })

  const base = results.none
  const sum = (side: StormSide, f: (r: RoundResult) => number) =>
    results[side].reduce((total, r) => total + f(r), 0)
  const rows: Row[] = []
  for (const side of ['singleFlight', 'swr', 'swrAhead'] as const) {
    const ours = results[side]
    const scenario = `Expiry storm: ${OURS[side].short} vs none`
    const metrics: { metric: string; of: (r: RoundResult) => number; format: (n: number) => string }[] = [
      { metric: 'loader calls/s', of: (r) => r.loaderPerSec, format: formatPerSec },
      { metric: 'requests/s served', of: (r) => r.requestsPerSec, format: formatPerSec },
      {
        metric: `requests slower than ${SLOW_NS / 1e6} ms`,
        of: (r) => r.waitedShare,
        format: formatShare,
      },
      { metric: 'max request latency', of: (r) => r.max, format: formatNs },
    ]
    for (const { metric, of, format } of metrics) {
      const o = ours.map(of)
      const b = base.map(of)
      const paired = pairedRatio(o, b)
      rows.push({
        scenario,
        metric: `${metric}, median of ${rounds} rounds`,
        ours: format(median(o)),
        baseline: format(median(b)),
        ratio: paired.median,
        roundRange: paired.range,
      })
    }
  }

  const totals = SIDES.map((side) => {
    const calls = sum(side, (r) => r.loaderCalls)
    const requests = sum(side, (r) => r.requests)
    const waited = sum(side, (r) => r.waited)
    const label = side === 'none' ? 'no protection' : OURS[side].label
    let extra = ''
    if (side !== 'none') {
      const coalesced = sum(side, (r) => r.stats!.coalesced)
      const stale = sum(side, (r) => r.stats!.staleServed)
      const refreshes = sum(side, (r) => r.stats!.backgroundRefreshes)
      const misses = sum(side, (r) => r.stats!.layers[0]!.misses)
      extra = `, ${formatCount(misses)} L1 misses, ${formatCount(coalesced)} coalesced, ${formatCount(stale)} stale served, ${formatCount(refreshes)} background refreshes`
    }
    return (
      `${label}: ${formatCount(calls)} loader calls for ${formatCount(requests)} requests ` +
      `(${formatCount(waited)} ≥ ${SLOW_NS / 1e6} ms)${extra}`
    )
  })
  const floor = (HOT_KEYS * 1000) / (TTL_MS + LOAD_MS)
  const noneCalls = sum('none', (r) => r.loaderCalls)
  const sfCalls = sum('singleFlight', (r) => r.loaderCalls)
  return {
    rows,
    method: [
      `Expiry storm: ${CONCURRENCY} requests kept in flight (closed-loop workers; each request starts on a ` +
        `fresh macrotask, as one arriving over I/O would) over ${HOT_KEYS} hot keys (round-robin), ` +
        `TTL ${TTL_MS} ms, a simulated database loader of ${LOAD_MS} ms (setTimeout) that counts its calls.`,
      `Expiry storm sides: no protection = naive cache-aside on \`new LRUCache({ max: 1000, ttl: ${TTL_MS} })\` ` +
        '(get → miss → await loader → set); ours = `cache.getOrSet(k, loader)` on an L1-only ' +
        `CacheStack([MemoryLayer]) with { ttl: ${TTL_MS} } / + staleWhileRevalidate: ${SWR_MS} / + ` +
        `refreshAhead: ${REFRESH_AHEAD} (rows "single-flight", "SWR", "SWR + refreshAhead"; the Baseline ` +
        'column is always no protection). L1-only because the baseline is a bare in-process lru-cache: same ' +
        'single layer on both sides, so the loader count measures coalescing alone (an L2 would add a Redis ' +
        'round trip to our misses only, and, written with the same TTL, would expire together with the L1 copy).',
      `Expiry storm: 1 warm-up round of ${warmupMs} ms per side, then ${rounds} rounds × ${roundMs} ms per side ` +
        `in A B C D / D C B A order (${((rounds * roundMs) / 1000).toFixed(1)} s per side). Every round ` +
        `builds a new cache and fills the ${HOT_KEYS} keys together before the clock starts (so they expire ` +
        'together: the storm; the fill is not counted); rates per round = calls (or requests) / time until ' +
        'the last request in flight answered; ratio = median of per-round ratios (ours / no protection); ' +
        `each request timed with process.hrtime.bigint: a hit takes microseconds, so ≥ ${SLOW_NS / 1e6} ms means ` +
        'it waited for a load (or sat through a GC scavenge, which here can take a few ms); max per round, ' +
        'median over rounds. Single-flight cuts database calls, not waiting: a caller arriving during a load ' +
        'still waits for it; stale-while-revalidate answers without waiting. Loader calls cross-checked with ' +
        'the stack stats. No DESIGN budget: info rows.',
      `Expiry storm totals: ${totals.join('; ')}. One load per key per TTL + load time would be ` +
        `${floor.toFixed(0)} calls/s; single-flight made ${formatRatio(sfCalls / noneCalls)} of the ` +
        'unprotected calls in total.',
    ],
  }
}
