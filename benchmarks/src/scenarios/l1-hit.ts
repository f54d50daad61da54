import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import { type BenchContext, REDIS_TTL_MS } from '../context'
import { compareL1, l1Plan } from '../l1-rows'
import { consume, measureBatches, type Side } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatCount, type ScenarioResult } from '../report'

const KEY_COUNT = 1000
const L1_TTL_MS = 60_000
const L1_MAX = 10_000

type Batches = Record<Side, (n: number) => Promise<void>>

/**
 * Scenario 1: an L1 hit through CacheStack (MemoryLayer over RedisLayer) against `await` of an async
 * wrapper around a raw lru-cache get, same options, same keys, same payload.
 */
export async function l1Hit(ctx: BenchContext): Promise<ScenarioResult> {
  const keys = makeKeys(KEY_COUNT)
  const redisLayer = new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: `${ctx.prefix}l1` })
  const cache = new CacheStack([new MemoryLayer({ ttl: L1_TTL_MS, maxSize: L1_MAX }), redisLayer])
  await cache.mset(keys.map((key) => ({ key, value: PAYLOAD })))

  const lru = new LRUCache<string, Product>({ max: L1_MAX, ttl: L1_TTL_MS })
  for (const key of keys) lru.set(key, PAYLOAD)
  const rawGet = async (key: string): Promise<Product | undefined> => lru.get(key)

  // Each side has its own loop (own call sites, own JIT feedback). Cursors cycle over all keys.
  let missing = 0
  let oursAt = 0
  let baseAt = 0
  const loader = (): Product => PAYLOAD
  const getBatches: Batches = {
    ours: async (n) => {
      let j = oursAt
      for (let i = 0; i < n; i++) {
        if ((await cache.get<Product>(keys[j]!)) === undefined) missing++
        if (++j === KEY_COUNT) j = 0
      }
      oursAt = j
    },
    baseline: async (n) => {
      let j = baseAt
      for (let i = 0; i < n; i++) {
        if ((await rawGet(keys[j]!)) === undefined) missing++
        if (++j === KEY_COUNT) j = 0
      }
      baseAt = j
    },
  }
  const getOrSetBatches: Batches = {
    ours: async (n) => {
      let j = oursAt
      let id = 0
      for (let i = 0; i < n; i++) {
        id += (await cache.getOrSet(keys[j]!, loader)).id
        if (++j === KEY_COUNT) j = 0
      }
      oursAt = j
      consume(id)
    },
    baseline: async (n) => {
      let j = baseAt
      let id = 0
      for (let i = 0; i < n; i++) {
        const value = await rawGet(keys[j]!)
        if (value === undefined) missing++
        else id += value.id
        if (++j === KEY_COUNT) j = 0
      }
      baseAt = j
      consume(id)
    },
  }

  const plan = l1Plan(ctx)
  cache.resetStats()
  const getSamples = await measureBatches(plan, getBatches)
  const getOrSetSamples = await measureBatches(plan, getOrSetBatches)
  const stats = cache.getStats()
  const l2Reads = (stats.layers[1]?.hits ?? 0) + (stats.layers[1]?.misses ?? 0)
  if (missing > 0 || stats.misses > 0 || stats.loaderCalls > 0 || l2Reads !== 0) {
    throw new Error(
      `L1 scenario is invalid: not every read was an L1 hit (baseline misses ${missing}, ` +
        `stack misses ${stats.misses}, loader calls ${stats.loaderCalls}, L2 reads ${l2Reads})`,
    )
  }

  const perSide = getSamples.ours.ops
  return {
    rows: [
      ...compareL1('L1 hit, get', getSamples.ours, getSamples.baseline, true, true),
      ...compareL1('L1 hit, getOrSet', getOrSetSamples.ours, getOrSetSamples.baseline, true, false),
    ],
    method: [
      `L1 hit: CacheStack([MemoryLayer({ ttl: ${L1_TTL_MS}, maxSize: ${L1_MAX} }), RedisLayer]) vs ` +
        `\`async (k) => lru.get(k)\` on \`new LRUCache({ max: ${L1_MAX}, ttl: ${L1_TTL_MS} })\`; ` +
        `${KEY_COUNT} keys cycled, all present (checked: 0 misses, 0 L2 reads, 0 loader calls).`,
      `L1 hit: ${formatCount(plan.warmupOps)} warm-up ops per side, then ${plan.rounds} rounds per side ` +
        `alternating A B / B A; a round = one timed batch of ${formatCount(plan.opsPerRound)} sequential ` +
        `awaited ops (gives time/op) + ${plan.latencyBatches} individually timed batches of ` +
        `${plan.latencyBatchOps} ops (their per-op means give p50/p99: per-op timers would cost more than the ` +
        `op). ${formatCount(perSide)} ops per side per API.`,
      'L1 getOrSet: same plan, loader hoisted (never called), compared with the same raw lru-cache ' +
        'baseline (informational).',
    ],
  }
}
