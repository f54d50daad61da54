import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { type RedisClusterHandle, startRedisCluster } from './redis-cluster'
import { getTestRedis, type TestRedis } from './test-redis'

export type RedisTarget = 'standalone' | 'cluster'

export interface RedisAndCluster {
  /** A client for `target`, once the file's hooks have run. */
  client(target: RedisTarget): Redis | Cluster
  /**
   * A key prefix no other test file shares: the test Redis's unique prefix on standalone (it may be a
   * shared REDIS_URL), `name` + a counter on the cluster this file started for itself.
   */
  prefix(target: RedisTarget, name: string): string
}

/** Registers hooks that give the test file a standalone Redis and a 3-master Cluster of its own. */
export function useRedisAndCluster(): RedisAndCluster {
  let redis: TestRedis
  let standalone: Redis
  let cluster: RedisClusterHandle
  let clusterClient: Cluster
  let run = 0

  beforeAll(async () => {
    redis = await getTestRedis()
    standalone = redis.createClient()
    cluster = await startRedisCluster({ masters: 3 })
    clusterClient = cluster.createClient()
    await clusterClient.set('warmup', '1') // the slot map is loaded before the first test
  })
  afterAll(async () => {
    await redis.close()
    await cluster.stop()
  })

  return {
    client: (target) => (target === 'standalone' ? standalone : clusterClient),
    prefix: (target, name) => `${target === 'standalone' ? redis.keyPrefix : ''}${name}${++run}`,
  }
}
