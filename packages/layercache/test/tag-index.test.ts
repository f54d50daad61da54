import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { CacheStack, InvalidOptionError, MemoryLayer, RedisLayer, RedisTagIndex } from '../src'

const redis = useRedisAndCluster()

describe.each(['standalone', 'cluster'] as const)('RedisTagIndex on %s Redis', (target) => {
  /** Instances as the docs compose them: each its own memory layer, one Redis, one shared tag index. */
  function fleet(knownKeysShards?: number) {
    const client = redis.client(target)
    const indexPrefix = redis.prefix(target, 'myapp:tags')
    const cachePrefix = redis.prefix(target, 'myapp:cache')
    const instance = () =>
      new CacheStack(
        [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, ttl: 300_000, prefix: cachePrefix })],
        { tagIndex: new RedisTagIndex({ client, prefix: indexPrefix, scanCount: 10, knownKeysShards }) },
      )
    return { client, indexPrefix, instance }
  }

  it('every instance finds what any other wrote, by tag, prefix and pattern', async () => {
    const { client, indexPrefix, instance } = fleet(16)
    const a = instance()
    const b = instance()
    await a.set('user:123', { id: 123 }, { tags: ['user:123'] })
    await a.set('user:123:posts', ['p'], { tags: ['user:123'] })
    await b.mset(
      Array.from({ length: 100 }, (_, i) => ({ key: `product:${i}`, value: i, tags: ['products'] })),
    )
    expect(await b.invalidateByTag('user:123')).toBe(2)
    expect(await a.invalidateByPattern('product:?')).toBe(10)
    expect(await a.invalidateByPrefix('product:')).toBe(90)
    // Their tag memberships went with them (their tags were recorded in the shared index): a cold
    // instance finds none left in Redis.
    expect(await instance().invalidateByTag('products')).toBe(0)
    expect(await client.get(`${indexPrefix}:~{${indexPrefix}:}layout`)).toBe('16')
  })

  it('namespaces and deletes work through the shared index', async () => {
    const { instance } = fleet()
    const a = instance()
    const acme = a.namespace('tenant:acme')
    const other = a.namespace('tenant:other')
    await acme.mset(Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t'] })))
    await other.mset(Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t'] })))
    await acme.delete('k1')
    expect(await acme.invalidateByTag('t')).toBe(29)
    expect(await other.invalidateByPrefix('')).toBe(30)
  })

  it('the options are validated', () => {
    const client = redis.client(target)
    const bad: unknown[] = [
      undefined,
      {},
      { client },
      { client, prefix: '' },
      { client: {}, prefix: 'p' },
      { client, prefix: 'p', knownKeysShards: 0 },
      { client, prefix: 'p', knownKeysShards: 1025 },
      { client, prefix: 'p', scanCount: -1 },
      { client, prefix: 'p', shards: 16 },
    ]
    for (const options of bad) {
      expect(() => new RedisTagIndex(options as ConstructorParameters<typeof RedisTagIndex>[0])).toThrow(
        InvalidOptionError,
      )
    }
    const index = new RedisTagIndex({ client, prefix: 'myapp:tags' })
    expect(index).toMatchObject({ prefix: 'myapp:tags:', scanCount: 100, knownKeysShards: 16 })
  })
})
