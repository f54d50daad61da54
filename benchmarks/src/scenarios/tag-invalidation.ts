import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { median, nowNs, pairedRatio, type Side, sidesInOrder, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, PAYLOAD_JSON } from '../payload'
import { formatCount, formatNs, type Row, type ScenarioResult } from '../report'
import {
  countExisting,
  countPerCall,
  describePerCall,
  describeWaits,
  medianTrips,
  type PerCallTraffic,
} from '../traffic'

/** The budget's size: always 10 000 keys, whatever BENCH_SCALE says (the other sizes scale). */
const BUDGET_KEYS = 10_000
/**
 * Sizes and timed rounds per side (at least 3 where a budget or a range is shown). Seeding dominates
 * the run time: a tagged write costs ~0.3 ms of client CPU per key today, so 100k keys take ~30 s to seed,
 * hence one timed round there.
 */
const SIZES = [
  { keys: (ctx: BenchContext) => Math.max(100, scaled(ctx, 1000)), rounds: 7 },
  { keys: () => BUDGET_KEYS, rounds: 3 },
  { keys: (ctx: BenchContext) => Math.max(2 * BUDGET_KEYS, scaled(ctx, 100_000)), rounds: 1 },
] as const
/** Entries per mset call / SET pipeline while seeding (not timed). */
const SEED_CHUNK = 1000
/** Keys per UNLINK command in the baseline: the batch size DESIGN.md names. */
const UNLINK_BATCH = 500

interface SizeResult {
  readonly keys: number
  readonly rounds: number
  readonly ns: Record<Side, number[]>
  readonly traffic: Record<Side, PerCallTraffic>
}

async function runSize(ctx: BenchContext, keyCount: number, rounds: number): Promise<SizeResult> {
  const client = ctx.client
  const keys = makeKeys(keyCount)
  const tag = `bench-tag-${keyCount}`
  const layerPrefix = `${ctx.prefix}tags${keyCount}:ours:`
  const rawPrefix = `${ctx.prefix}tags${keyCount}:raw:`
  const memory = new MemoryLayer({ maxSize: keyCount * 2 })
  const redisLayer = new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: layerPrefix })
  const cache = new CacheStack([memory, redisLayer])
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
    // The best raw approach: it knows its key list in advance (no membership read, no epoch) and sends
    // UNLINK with 500 keys per command, all commands in one pipeline.
    baseline: async () => {
      const pipe = client.pipeline()
      for (let i = 0; i < keyCount; i += UNLINK_BATCH) pipe.unlink(...rawKeys.slice(i, i + UNLINK_BATCH))
      const replies = (await pipe.exec()) ?? []
      let removed = 0
      for (const [error, n] of replies) {
        if (error) throw error
        removed += n as number
      }
      if (removed !== keyCount) throw new Error(`baseline UNLINK removed ${removed} of ${keyCount} keys`)
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

  try {
    const ns: Record<Side, number[]> = { ours: [], baseline: [] }
    const traffic: Partial<Record<Side, PerCallTraffic>> = {}
    // Both sides re-seeded before every round, then run in A B / B A order. Round 0 is a warm-up that
    // counts the round trips (untimed: the counting hooks slow promises); rounds 1… are timed.
    for (let round = 0; round <= rounds; round++) {
      await seed()
      for (const side of sidesInOrder(round)) {
        if (round === 0) traffic[side] = await countPerCall(client, 1, run[side])
        else {
          const start = nowNs()
          await run[side]()
          ns[side].push(sinceNs(start))
        }
        await verify(side)
      }
    }
    return { keys: keyCount, rounds, ns, traffic: { ours: traffic.ours!, baseline: traffic.baseline! } }
  } finally {
    await redisLayer.clear()
    for (let i = 0; i < keyCount; i += UNLINK_BATCH)
      await client.unlink(...rawKeys.slice(i, i + UNLINK_BATCH))
  }
}

/**
 * Invalidating a tag of N keys on CacheStack([MemoryLayer, RedisLayer]) against the best raw approach on
 * the same ioredis client: UNLINK of the known keys, 500 keys per command, all in one pipeline.
 */
export async function tagInvalidation(ctx: BenchContext): Promise<ScenarioResult> {
  const rows: Row[] = []
  const plans: string[] = []
  const results: SizeResult[] = []
  for (const size of SIZES) {
    const keyCount = size.keys(ctx)
    const rounds = size.rounds === 1 ? 1 : Math.max(3, Math.round(size.rounds * Math.min(1, ctx.scale)))
    const result = await runSize(ctx, keyCount, rounds)
    results.push(result)
    const scenario = `Tag invalidation, ${formatCount(keyCount)} keys`
    const paired = pairedRatio(result.ns.ours, result.ns.baseline)
    rows.push({
      scenario,
      metric:
        `time, invalidateByTag vs pipelined UNLINK of ${UNLINK_BATCH} keys per command, ` +
        (rounds === 1 ? '1 round' : `median of ${rounds} rounds`),
      ours: formatNs(median(result.ns.ours)),
      baseline: formatNs(median(result.ns.baseline)),
      ratio: paired.median,
      roundRange: rounds === 1 ? undefined : paired.range,
      budget: keyCount === BUDGET_KEYS ? { text: '≤ 1.5× time', maxRatio: 1.5 } : undefined,
    })
    const ours = medianTrips(result.traffic.ours)
    const base = medianTrips(result.traffic.baseline)
    rows.push({
      scenario,
      metric:
        'Redis round trips (pipeline flushes + commands outside a pipeline, counted on the client): ' +
        `ours ${describePerCall(result.traffic.ours)}, ${describeWaits(result.traffic.ours)}; baseline ` +
        `${describePerCall(result.traffic.baseline)}`,
      ours: formatCount(ours),
      baseline: formatCount(base),
      ratio: ours / base,
    })
    plans.push(`${formatCount(keyCount)} keys × ${rounds} round${rounds === 1 ? '' : 's'}`)
  }

  // "Round trips grow with keys/500 at most": from the smallest to the largest size, ours may add at most
  // as many round trips as 500-key batches were added.
  const small = results[0]!
  const large = results.at(-1)!
  const grew = medianTrips(large.traffic.ours) - medianTrips(small.traffic.ours)
  const allowed = Math.ceil(large.keys / UNLINK_BATCH) - Math.ceil(small.keys / UNLINK_BATCH)
  rows.push({
    scenario: `Tag invalidation, ${formatCount(small.keys)} → ${formatCount(large.keys)} keys`,
    metric:
      `growth of the Redis round trips: ours ${medianTrips(small.traffic.ours)} → ` +
      `${medianTrips(large.traffic.ours)}; allowed: the growth of keys/${UNLINK_BATCH} ` +
      `(${Math.ceil(small.keys / UNLINK_BATCH)} → ${Math.ceil(large.keys / UNLINK_BATCH)})`,
    ours: `${grew >= 0 ? '+' : ''}${formatCount(grew)}`,
    baseline: `+${formatCount(allowed)}`,
    ratio: grew / allowed,
    budget: { text: `growth ≤ keys/${UNLINK_BATCH}`, maxRatio: 1 },
  })

  return {
    rows,
    method: [
      'Tag invalidation: ours = `await cache.invalidateByTag(tag)` on CacheStack([MemoryLayer, ' +
        'RedisLayer({ client })]), N keys written with `cache.mset([{ key, value, tags: [tag] }])` in chunks ' +
        `of ${SEED_CHUNK} (in L1 and Redis); baseline = the best raw approach: one ioredis pipeline of ` +
        `\`UNLINK k1 … k${UNLINK_BATCH}\` commands (${UNLINK_BATCH} keys each) for raw JSON copies of the same keys ` +
        'under another prefix, on the same plain client (it knows its key list, reads no membership and ' +
        'bumps no epoch; it does not touch L1).',
      `Tag invalidation: ${plans.join(', ')} (${formatCount(BUDGET_KEYS)} keys at every BENCH_SCALE: the ` +
        'budget size; the others scale); each round re-seeds both sides (not timed) and then times each side ' +
        'once in A B / B A order, after one warm-up round that counts the round trips; ratio = median of ' +
        'per-round ratios. After every run the scenario checks that all N keys are gone from Redis (EXISTS) ' +
        'and from L1, that invalidateByTag returned N and that the baseline UNLINKs removed N. Round trips = ' +
        'pipeline flushes + commands sent outside a pipeline, attributed to the call (AsyncLocalStorage ' +
        "around ioredis's sendCommand, so the layer's background key-index collection is left out). Budget " +
        `on round trips: from the smallest to the largest size they may grow by at most the growth of ` +
        `⌈N/${UNLINK_BATCH}⌉.`,
    ],
  }
}
