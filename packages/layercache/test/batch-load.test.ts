import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { CacheStack, MemoryLayer, RedisLayer } from '../src'

const redis = useRedisAndCluster()

describe.each(['standalone', 'cluster'] as const)('getOrSetMany on %s Redis', (target) => {
  function setup() {
    const prefix = redis.prefix(target, 'many')
    const client = redis.client(target)
    const instance = () =>
      new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix })])
    return { a: instance(), b: instance(), cold: () => new CacheStack([new RedisLayer({ client, prefix })]) }
  }

  it('loads what Redis lacks in one call and leaves it for the other instances', async () => {
    const { a, b, cold } = setup()
    await b.set('row:2', 'from b')
    const calls: string[][] = []
    const values = await a.getOrSetMany(['row:1', 'row:2', 'row:3'], async (keys) => {
      calls.push([...keys])
      return keys.map((key) => `loaded ${key}`)
    })
    expect(values).toEqual(['loaded row:1', 'from b', 'loaded row:3'])
    expect(calls).toEqual([['row:1', 'row:3']])
    expect(await cold().mget(['row:1', 'row:2', 'row:3'])).toEqual(values)
  })

  it('a key another instance invalidates during the batch is not written back to Redis', async () => {
    const { a, b, cold } = setup()
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let started!: () => void
    const loading = new Promise<void>((resolve) => {
      started = resolve
    })
    const many = a.getOrSetMany(
      ['row:1', 'row:2', 'row:3'],
      async (keys) => {
        started()
        await held
        return keys.map((key) => `old ${key}`)
      },
      { tags: ['rows'] },
    )
    await loading
    await b.delete('row:1')
    await b.invalidateByPrefix('row:3')
    release()
    expect(await many).toEqual(['old row:1', 'old row:2', 'old row:3'])
    expect(await cold().mget(['row:1', 'row:2', 'row:3'])).toEqual([undefined, 'old row:2', undefined])
  })
})
