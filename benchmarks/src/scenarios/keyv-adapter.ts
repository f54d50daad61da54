import KeyvRedis from '@keyv/redis'
import { createKeyv } from '@layercache/keyv'
import { createCache } from 'cache-manager'
import { CacheableMemory } from 'cacheable'
import { Keyv } from 'keyv'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import {
  type BatchPlan,
  consume,
  measureBatchesAmong,
  median,
  pairedRatio,
  type SideSamples,
} from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'

const KEY_COUNT = 1000
const L1_TTL_MS = 60_000
const L1_MAX = 10_000

type Get = (key: string) => Promise<Product | undefined>
type Side = 'adapter' | 'unserialized' | 'cacheManager' | 'stack'

/** A batch function per side: `n` sequential awaited gets, cycling over the keys from where it stopped. */
function batchesOf(
  keys: readonly string[],
  gets: Record<Side, Get>,
): Record<Side, (n: number) => Promise<void>> {
  const batches = {} as Record<Side, (n: number) => Promise<void>>
  for (const side of Object.keys(gets) as Side[]) {
    const get = gets[side]
    let at = 0
    batches[side] = async (n) => {
      let sum = 0
      for (let i = 0; i < n; i++) {
        const value = await get(keys[at]!)
        if (value === undefined) throw new Error(`Keyv adapter: ${side} missed ${keys[at]}`)
        sum += value.id
        if (++at === keys.length) at = 0
      }
      consume(sum)
    }
  }
  return batches
}

function row(scenario: string, metric: string, a: SideSamples, b: SideSamples): Row {
  const aNs = median(a.perRound)
  const bNs = median(b.perRound)
  const paired = pairedRatio(a.perRound, b.perRound)
  return {
    scenario,
    metric: `${metric}, median of ${a.perRound.length} rounds`,
    ours: `${formatNs(aNs)} (${formatRate(1e9 / aNs)})`,
    baseline: `${formatNs(bNs)} (${formatRate(1e9 / bNs)})`,
    ratio: paired.median,
    roundRange: paired.range,
  }
}

/**
 * cache-manager on @layercache/keyv: what a cache-manager user's `get` costs on a layercache stack, against
 * cache-manager set up as its docs show (a CacheableMemory Keyv over @keyv/redis) and against the stack's
 * own `get`: memory hits, and Redis hits with one caller.
 */
export async function keyvAdapter(ctx: BenchContext): Promise<ScenarioResult> {
  const keys = makeKeys(KEY_COUNT)
  const prefix = `${ctx.prefix}keyv-adapter:`
  // Memory hits: every key in every side's memory tier.
  const stack = new CacheStack([
    new MemoryLayer({ ttl: L1_TTL_MS, maxSize: L1_MAX }),
    new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: `${prefix}l1:` }),
  ])
  const onStack = createCache({ stores: [createKeyv(stack)], ttl: REDIS_TTL_MS })
  // Keyv not serializing: the stack stores Keyv's { value, expires } object as it is (plain data only).
  const plain = { serialize: undefined, deserialize: undefined }
  const onStackPlain = createCache({
    stores: [createKeyv(stack, {}, { ...plain, namespace: 'plain' })],
    ttl: REDIS_TTL_MS,
  })
  const redisKeyv = (namespace: string) => new Keyv({ store: new KeyvRedis(ctx.url), namespace })
  const twoTiers = createCache({
    stores: [
      new Keyv({ store: new CacheableMemory({ ttl: L1_TTL_MS, lruSize: L1_MAX }) }),
      redisKeyv(`${prefix}cm1`),
    ],
    ttl: REDIS_TTL_MS,
  })
  // Redis hits: a stack of the Redis layer alone, and cache-manager on @keyv/redis alone.
  const redisOnly = new CacheStack([
    new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: `${prefix}l2:` }),
  ])
  const onRedisStack = createCache({ stores: [createKeyv(redisOnly)], ttl: REDIS_TTL_MS })
  const onRedisStackPlain = createCache({
    stores: [createKeyv(redisOnly, {}, { ...plain, namespace: 'plain' })],
    ttl: REDIS_TTL_MS,
  })
  const onKeyvRedis = createCache({ stores: [redisKeyv(`${prefix}cm2`)], ttl: REDIS_TTL_MS })
  try {
    const entries = keys.map((key) => ({ key, value: PAYLOAD }))
    const caches = [onStack, onStackPlain, twoTiers, onRedisStack, onRedisStackPlain, onKeyvRedis]
    await Promise.all(caches.map((cache) => cache.mset(entries)))
    await stack.mset(entries.map(({ key, value }) => ({ key: `direct:${key}`, value })))
    await redisOnly.mset(entries.map(({ key, value }) => ({ key: `direct:${key}`, value })))

    const memoryPlan: BatchPlan = {
      warmupOps: scaled(ctx, 60_000),
      rounds: Math.max(3, scaled(ctx, 15)),
      opsPerRound: scaled(ctx, 20_000),
      latencyBatches: 0,
      latencyBatchOps: 0,
    }
    const memory = await measureBatchesAmong(
      memoryPlan,
      ['adapter', 'unserialized', 'cacheManager', 'stack'],
      batchesOf(keys, {
        adapter: (key) => onStack.get<Product>(key),
        unserialized: (key) => onStackPlain.get<Product>(key),
        cacheManager: (key) => twoTiers.get<Product>(key),
        stack: (key) => stack.get<Product>(`direct:${key}`),
      }),
    )
    const stats = stack.getStats()
    if ((stats.layers[1]?.hits ?? 0) + (stats.layers[1]?.misses ?? 0) > 0) {
      throw new Error('Keyv adapter: a memory-hit read went to Redis')
    }
    const redisPlan: BatchPlan = {
      warmupOps: scaled(ctx, 2000),
      rounds: Math.max(3, scaled(ctx, 10)),
      opsPerRound: scaled(ctx, 2000),
      latencyBatches: 0,
      latencyBatchOps: 0,
    }
    const redis = await measureBatchesAmong(
      redisPlan,
      ['adapter', 'unserialized', 'cacheManager', 'stack'],
      batchesOf(keys, {
        adapter: (key) => onRedisStack.get<Product>(key),
        unserialized: (key) => onRedisStackPlain.get<Product>(key),
        cacheManager: (key) => onKeyvRedis.get<Product>(key),
        stack: (key) => redisOnly.get<Product>(`direct:${key}`),
      }),
    )
    const scenario = 'Keyv adapter'
    return {
      rows: [
        row(
          scenario,
          'memory hit, cache-manager get: on the stack vs memory + @keyv/redis',
          memory.adapter,
          memory.cacheManager,
        ),
        row(
          scenario,
          'memory hit: cache-manager get on the stack vs the stack’s own get',
          memory.adapter,
          memory.stack,
        ),
        row(
          scenario,
          'memory hit, cache-manager get on the stack: Keyv not serializing vs serializing (default)',
          memory.unserialized,
          memory.adapter,
        ),
        row(
          scenario,
          'Redis hit, 1 caller, cache-manager get: on the stack vs on @keyv/redis',
          redis.adapter,
          redis.cacheManager,
        ),
        row(
          scenario,
          'Redis hit, 1 caller: cache-manager get on the stack vs the stack’s own get',
          redis.adapter,
          redis.stack,
        ),
        row(
          scenario,
          'Redis hit, 1 caller, cache-manager get on the stack: Keyv not serializing vs serializing',
          redis.unserialized,
          redis.adapter,
        ),
      ],
      method: [
        'Keyv adapter (information, no budget): cache-manager 7 `get` on `createCache({ stores: [createKeyv(stack)] })` ' +
          '(Keyv 5 serializing as by default) against the same call on cache-manager set up as its docs show, ' +
          `\`[Keyv(CacheableMemory({ ttl: ${L1_TTL_MS}, lruSize: ${L1_MAX} })), Keyv(KeyvRedis(url))]\`, and against ` +
          "the stack's own `get` of the same payload; a fourth side has Keyv not serialize " +
          "(`serialize: undefined, deserialize: undefined`: the stack stores Keyv's `{ value, expires }` object). " +
          'Memory hits: CacheStack([MemoryLayer, RedisLayer]), ' +
          `${formatCount(KEY_COUNT)} keys cycled, all in memory (checked: 0 Redis reads); ` +
          `${memoryPlan.rounds} rounds of ${formatCount(memoryPlan.opsPerRound)} sequential awaited gets per side, ` +
          'four sides alternating. Redis hits: CacheStack([RedisLayer]) vs cache-manager on Keyv(KeyvRedis) alone, ' +
          `one plain ioredis client for the stacks, ${redisPlan.rounds} rounds of ${formatCount(redisPlan.opsPerRound)}.`,
      ],
    }
  } finally {
    await Promise.all([twoTiers.disconnect(), onKeyvRedis.disconnect()])
  }
}
