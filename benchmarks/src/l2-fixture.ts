import type { Redis } from 'ioredis'
import { CacheStack, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS } from './context'
import { makeKeys, PAYLOAD, PAYLOAD_JSON } from './payload'

export interface L2Fixture {
  /** CacheStack([RedisLayer]): no L1, so every get goes to Redis. */
  readonly cache: CacheStack
  readonly keys: readonly string[]
  /** Where our entries live in Redis (the layer prefix + key). */
  readonly layerPrefix: string
  /** The same payload as raw JSON, under keys of its own, for the baseline. */
  readonly rawKeys: readonly string[]
}

/** Seeds the same payload twice, once through layercache and once raw, under run-unique prefixes. */
export async function seedL2Fixture(
  ctx: BenchContext,
  client: Redis,
  tag: string,
  keyCount: number,
): Promise<L2Fixture> {
  const keys = makeKeys(keyCount)
  const layerPrefix = `${ctx.prefix}${tag}:ours:`
  const rawPrefix = `${ctx.prefix}${tag}:raw:`
  const cache = new CacheStack([new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: layerPrefix })])
  await cache.mset(keys.map((key) => ({ key, value: PAYLOAD })))
  const rawKeys = keys.map((key) => rawPrefix + key)
  const pipe = client.pipeline()
  for (const rawKey of rawKeys) pipe.set(rawKey, PAYLOAD_JSON, 'PX', REDIS_TTL_MS)
  await pipe.exec()
  return { cache, keys, layerPrefix, rawKeys }
}
