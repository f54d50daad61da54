import { duplicateClient } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterAll } from 'vitest'
import { type CacheLayer, CacheStack, MemoryLayer, RedisLayer } from '../../src'

export type Target = 'memory only' | 'standalone' | 'cluster'

/**
 * Registers hooks that start a standalone Redis and a 3-master Cluster for the file, and returns a
 * factory of two "instances" (stacks with their own memory layer) sharing one fresh prefix on a target.
 */
export function useRedisTargets(name: string) {
  const redis = useRedisAndCluster()
  // One second connection per target for the whole file: tests make an instance on its own connection in
  // each of hundreds of rounds, and connecting a Cluster client each time made them slow under load.
  const ownConnections = new Map<'standalone' | 'cluster', Redis | Cluster>()
  afterAll(async () => {
    await Promise.all([...ownConnections.values()].map((own) => own.quit()))
  })
  return (target: Target) => {
    const remote = target === 'memory only' ? 'standalone' : target
    const prefix = redis.prefix(remote, name)
    const client = redis.client(remote)
    const layers = (): CacheLayer[] =>
      target === 'memory only'
        ? [new MemoryLayer({ ttl: 60_000 })]
        : [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix })]
    /** A stack on Redis alone: what a cold instance would read. */
    const redisOnly = () => new CacheStack([new RedisLayer({ client, prefix })])
    /**
     * An instance with a connection of its own (its commands interleave with the others' in Redis as
     * another process's would); `close` closes the stack.
     */
    const onOwnConnection = () => {
      const own = ownConnections.get(remote) ?? duplicateClient(client)
      ownConnections.set(remote, own)
      const stack = new CacheStack([
        new MemoryLayer({ ttl: 60_000 }),
        new RedisLayer({ client: own, prefix }),
      ])
      return { stack, close: () => stack.close() }
    }
    return { a: new CacheStack(layers()), b: new CacheStack(layers()), redisOnly, onOwnConnection }
  }
}
