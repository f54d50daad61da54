import {
  getTestRedis,
  type RedisClusterHandle,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { type CacheLayer, CacheStack, MemoryLayer, RedisLayer } from '../../src'

export type Target = 'memory only' | 'standalone' | 'cluster'

/**
 * Registers hooks that start a standalone Redis and a 3-master Cluster for the file, and returns a
 * factory of two "instances" (stacks with their own memory layer) sharing one fresh prefix on a target.
 */
export function useRedisTargets(name: string) {
  let redis: TestRedis
  let client: Redis
  let cluster: RedisClusterHandle
  let clusterClient: Cluster
  let run = 0

  beforeAll(async () => {
    redis = await getTestRedis()
    client = redis.createClient()
    cluster = await startRedisCluster({ masters: 3 })
    clusterClient = cluster.createClient()
    await clusterClient.set('warmup', '1')
  })
  afterAll(async () => {
    await redis.close()
    await cluster.stop()
  })

  return (target: Target) => {
    run++
    const prefix = target === 'standalone' ? `${redis.keyPrefix}${name}${run}` : `${name}${run}`
    const redisClient = target === 'standalone' ? client : clusterClient
    const layers = (): CacheLayer[] =>
      target === 'memory only'
        ? [new MemoryLayer({ ttl: 60_000 })]
        : [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client: redisClient, prefix })]
    /** A stack on Redis alone: what a cold instance would read. */
    const redisOnly = () => new CacheStack([new RedisLayer({ client: redisClient, prefix })])
    return { a: new CacheStack(layers()), b: new CacheStack(layers()), redisOnly }
  }
}
