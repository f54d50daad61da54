import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { median, nowNs, pairedRatio, type Side, sidesInOrder, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, PAYLOAD_JSON } from '../payload'
import { formatCount, formatNs, type Row, type ScenarioResult } from '../report'
import { countExisting, countTraffic, describeTraffic, roundTrips, type Traffic } from '../traffic'

/** Key counts at BENCH_SCALE=1 and timed rounds per side. Seeding dominates the run time: a tagged write
 * costs ~0.3 ms of client CPU per key, so 100k keys take ~30 s to seed, hence one round there. */
const SIZES = [
  { keys: 1000, rounds: 7, warmup: true },
  { keys: 10_000, rounds: 3, warmup: true },
  { keys: 100_000, rounds: 1, warmup: false },
] as const
/** Entries per mset call / SET pipeline while seeding (not timed). */
const SEED_CHUNK = 1000
const BUDGET_KEYS = 10_000

interface SizeResult {
  readonly keys: number
  readonly rounds: number
  readonly ns: Record<Side, number[]>
  readonly traffic: Record<Side, Traffic>
}

async function runSize(
  ctx: BenchContext,
  keyCount: number,
  rounds: number,
  warmup: boolean,
): Promise<SizeResult> {
  const client = ctx.client
  const keys = makeKeys(keyCount)
  const tag = `bench-tag-${keyCount}`
  const layerPrefix = `${ctx.prefix}tags${keyCount}:ours:`
  const rawPrefix = `${ctx.prefix}tags${keyCount}:raw:`
  const memory = new MemoryLayer({ maxSize: keyCount * 2 })
  const cache = new CacheStack([memory, new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: layerPrefix })])
  const ourFullKeys = keys.map((key) => layerPrefix + key)
  const rawKeys = keys.map((key) => rawPrefix + key)

  const seed = async () => {
    for (let i = 0; i < keyCount; i += SEED_CHUNK) {
      await cache.mset(keys.slice(i, i + SEED_CHUNK).map((key) => ({ key, value: PAYLOAD, tags: [tag] })))
      const pipe = client.pipeline()
      for (const rawKey of rawKeys.slice(i, i + SEED_CHUNK))
        pipe.set(rawKey, PAYLOAD_JSON, 'PX', REDIS_TTL_MS)
      await pipe.exec()
    }
    const ours = await countExisting(client, ourFullKeys)
    const raw = await countExisting(client, rawKeys)
    if (ours !== keyCount || raw !== keyCount || memory.size !== keyCount) {
      throw new Error(
        `tag invalidation seeding failed: ${ours} of ${keyCount} keys in Redis (ours), ${raw} raw, ` +
          `${memory.size} in L1`,
      )
    }
  }

  const run: Record<Side, () => Promise<void>> = {
    ours: async () => {
      const removed = await cache.invalidateByTag(tag)
      if (removed !== keyCount) {
        throw new Error(`invalidateByTag returned ${removed}, expected ${keyCount}`)
      }
    },
    // Best case for the baseline: it knows its key list in advance (no membership read, no epoch).
    baseline: async () => {
      const pipe = client.pipeline()
      for (const rawKey of rawKeys) pipe.unlink(rawKey)
      const replies = (await pipe.exec()) ?? []
      if (replies.length !== keyCount) throw new Error(`baseline UNLINK got ${replies.length} replies`)
    },
  }
  const verify = async (side: Side) => {
    const left = await countExisting(client, side === 'ours' ? ourFullKeys : rawKeys)
    const inL1 = side === 'ours' ? keys.filter((key) => memory.has(key)).length : 0
    if (left !== 0 || inL1 !== 0) {
      throw new Error(
        `tag invalidation is invalid: after ${side}'s run ${left} of ${keyCount} keys are still in Redis, ` +
          `${inL1} in L1`,
      )
    }
  }

  const ns: Record<Side, number[]> = { ours: [], baseline: [] }
  const traffic: Partial<Record<Side, Traffic>> = {}
  // Both sides re-seeded before every round, then run in A B / B A order. Round 0 counts the traffic
  // (wrapped client) and, when the size has a warm-up, is not timed; without one (the largest size, where
  // one seeding takes seconds) round 0 is also timed, with the counting wrapper on both sides.
  const first = warmup ? 0 : 1
  for (let round = first; round <= rounds; round++) {
    await seed()
    for (const side of sidesInOrder(round)) {
      const counter = round === first ? countTraffic(client) : undefined
      let elapsed: number
      try {
        const start = nowNs()
        await run[side]()
        elapsed = sinceNs(start)
      } finally {
        counter?.stop()
      }
      if (counter !== undefined) traffic[side] = counter.traffic
      await verify(side)
      if (round > 0) ns[side].push(elapsed)
    }
  }
  return { keys: keyCount, rounds, ns, traffic: { ours: traffic.ours!, baseline: traffic.baseline! } }
}

/**
 * Scenario 6: invalidating a tag of N keys on CacheStack([MemoryLayer, RedisLayer]) (INCR epoch, ZRANGE
 * members, UNLINK members; then the stack deletes the found keys from every layer) against a raw pipelined
 * UNLINK of the same number of keys on the same ioredis client, which knows its key list in advance.
 */
export async function tagInvalidation(ctx: BenchContext): Promise<ScenarioResult> {
  const rows: Row[] = []
  const plans: string[] = []
  for (const size of SIZES) {
    const keyCount = scaled(ctx, size.keys)
    const rounds = Math.max(1, Math.round(size.rounds * Math.min(1, ctx.scale)))
    const result = await runSize(ctx, keyCount, rounds, size.warmup)
    const scenario = `Tag invalidation, ${formatCount(keyCount)} keys`
    const paired = pairedRatio(result.ns.ours, result.ns.baseline)
    rows.push({
      scenario,
      metric: `time, invalidateByTag vs pipelined UNLINK, ${rounds === 1 ? '1 round' : `median of ${rounds} rounds`}`,
      ours: formatNs(median(result.ns.ours)),
      baseline: formatNs(median(result.ns.baseline)),
      ratio: paired.median,
      roundRange: paired.range,
      budget: keyCount === BUDGET_KEYS ? { text: '≤ 2× time', maxRatio: 2 } : undefined,
    })
    const ours = roundTrips(result.traffic.ours)
    const base = roundTrips(result.traffic.baseline)
    rows.push({
      scenario,
      metric:
        'Redis round trips (pipelines + commands outside a pipeline, counted on the client): ' +
        `ours ${describeTraffic(result.traffic.ours)}; baseline ${describeTraffic(result.traffic.baseline)}`,
      ours: formatCount(ours),
      baseline: formatCount(base),
      ratio: ours / base,
    })
    plans.push(`${formatCount(keyCount)} keys × ${rounds} round${rounds === 1 ? '' : 's'}`)
  }
  return {
    rows,
    method: [
      'Tag invalidation: ours = `await cache.invalidateByTag(tag)` on CacheStack([MemoryLayer, ' +
        'RedisLayer({ client })]), N keys written with `cache.mset([{ key, value, tags: [tag] }])` in chunks ' +
        `of ${SEED_CHUNK} (in L1 and Redis); baseline = one ioredis pipeline of N \`UNLINK rawKey\` for raw ` +
        'JSON copies of the same keys under another prefix, on the same plain client (best case: it knows ' +
        'its key list, reads no membership and bumps no epoch).',
      `Tag invalidation: ${plans.join(', ')}; each round re-seeds both sides (not timed) and then times ` +
        'each side once in A B / B A order, after one warm-up round; ratio = median of per-round ratios. ' +
        'After every run the scenario checks that all N keys are gone from Redis (EXISTS) and from L1, and ' +
        'that invalidateByTag returned N. Round trips = ioredis pipelines executed + commands sent outside a ' +
        "pipeline, counted by wrapping the client's `pipeline()` and `sendCommand` during the warm-up round " +
        '(at the largest size during its timed round, on both sides).',
    ],
  }
}
