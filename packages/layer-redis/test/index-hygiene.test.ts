import { CacheStack } from '@layercache/core'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { RedisKeyIndex } from '../src/redis-key-index'
import { RedisTagStore } from '../src/redis-tag-store'

const redis = useRedisAndCluster()

/**
 * Invariant 7 and "deleting or overwriting a key cleans its old memberships": the tag sets and the key
 * index follow the live keys, not every key ever written.
 */
describe.each(['standalone', 'cluster'] as const)('index hygiene on %s Redis', (target) => {
  function setup() {
    const layer = new RedisLayer({ client: redis.client(target), prefix: redis.prefix(target, 'hyg') })
    const cache = new CacheStack([layer])
    const tags = new RedisTagStore(layer)
    const index = new RedisKeyIndex(layer)
    const raw = layer.client
    const members = (tag: string) => raw.zrange(tags.tagSetKey(tag), 0, -1)
    const indexed = async (key: string) => {
      const shard = await index.shardOf(layer.prefix + key)
      return (
        (await raw.zscore(shard.keysKey, layer.prefix + key)) !== null &&
        (await raw.zscore(shard.expiryKey, layer.prefix + key)) !== null
      )
    }
    /** Entries left in every shard's three structures. */
    const indexSizes = async () => {
      const sizes = { k: 0, kx: 0, kt: 0 }
      for (const shard of await index.shards()) {
        sizes.k += await raw.zcard(shard.keysKey)
        sizes.kx += await raw.zcard(shard.expiryKey)
        sizes.kt += await raw.hlen(shard.tagsKey)
      }
      return sizes
    }
    return { layer, cache, raw, members, indexed, index, indexSizes }
  }

  it('a delete removes the key from its tag sets and from the key index', async () => {
    const { cache, layer, members, indexed, raw, index } = setup()
    await cache.set('p1', 1, { tags: ['category:a', 'featured'] })
    await cache.set('p2', 2, { tags: ['category:a'] })
    expect(await members('category:a')).toHaveLength(2)
    expect(await indexed('p1')).toBe(true)
    await cache.delete('p1')
    expect(await members('category:a')).toEqual([`${layer.prefix}p2`])
    expect(await members('featured')).toEqual([])
    expect(await indexed('p1')).toBe(false)
    expect(await raw.hget((await index.shardOf(`${layer.prefix}p1`)).tagsKey, `${layer.prefix}p1`)).toBeNull()
    expect(await cache.invalidateByTag('category:a')).toBe(1)
  })

  it('an overwrite with other tags leaves the old tags; an invalidation of an old tag spares it', async () => {
    const { cache, members, layer } = setup()
    await cache.set('p1', 'v1', { tags: ['sale', 'category:a'] })
    await cache.set('p1', 'v2', { tags: ['category:b'] })
    expect(await members('sale')).toEqual([])
    expect(await members('category:a')).toEqual([])
    expect(await members('category:b')).toEqual([`${layer.prefix}p1`])
    expect(await cache.invalidateByTag('sale')).toBe(0)
    expect(await cache.get('p1')).toBe('v2')
  })

  it('tag and prefix invalidations remove the index entries of what they removed', async () => {
    const { cache, members, indexed } = setup()
    await cache.mset(
      Array.from({ length: 20 }, (_, i) => ({ key: `user:${i}`, value: i, tags: [i % 2 ? 'odd' : 'even'] })),
    )
    expect(await cache.invalidateByTag('odd')).toBe(10)
    expect(await members('odd')).toEqual([])
    expect(await indexed('user:1')).toBe(false)
    expect(await indexed('user:2')).toBe(true)
    expect(await cache.invalidateByPrefix('user:')).toBe(10)
    expect(await members('even')).toEqual([])
    expect(await indexed('user:2')).toBe(false)
  })

  it('many writes and deletes of keys without TTL leave nothing behind', async () => {
    const { cache, indexSizes, members } = setup()
    for (let round = 0; round < 5; round++) {
      await cache.mset(
        Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: round, tags: [`t${round % 2}`] })),
      )
      await cache.mdelete(Array.from({ length: 50 }, (_, i) => `k${i}`))
    }
    expect(await indexSizes()).toEqual({ k: 0, kx: 0, kt: 0 })
    expect(await members('t0')).toEqual([])
    expect(await members('t1')).toEqual([])
  })

  it('a tagged set racing a delete never leaves a live value its tag cannot reach (race loop)', async () => {
    const { cache, layer, raw } = setup()
    let untracked = 0
    for (let i = 0; i < 300; i++) {
      const key = `race${i}`
      await cache.set(key, 'before', { tags: ['race'] })
      // The delete starts a varying number of event-loop turns later, to land between each of the
      // writer's steps over the 300 iterations.
      const deleteLater = async () => {
        for (let turn = 0; turn < i % 12; turn++) await new Promise((resolve) => setImmediate(resolve))
        await cache.delete(key)
      }
      await Promise.all([cache.set(key, 'after', { tags: ['race'] }), deleteLater()])
      const live = (await raw.exists(layer.prefix + key)) === 1
      const tracked =
        (await raw.zscore(new RedisTagStore(layer).tagSetKey('race'), layer.prefix + key)) !== null
      if (live && !tracked) untracked++
    }
    expect(untracked).toBe(0)
    // And one invalidation still reaches everything that survived.
    await cache.invalidateByTag('race')
    const left = await Promise.all(
      Array.from({ length: 300 }, (_, i) => raw.exists(`${layer.prefix}race${i}`)),
    )
    expect(left.reduce((a, b) => a + b, 0)).toBe(0)
  })

  it("overwrites racing with other tags leave the key in exactly its last value's tag sets (race loop)", async () => {
    const { cache, layer, members } = setup()
    const choices = [[], ['a'], ['b'], ['a', 'b'], ['c'], ['a', 'c']]
    const wrong: string[] = []
    for (let i = 0; i < 150; i++) {
      const key = `over${i % 5}`
      const writes = [0, 1, 2].map((w) => choices[(i * 7 + w * 5) % choices.length]!)
      await Promise.all(
        writes.map(async (tags, w) => {
          for (let turn = 0; turn < (i + w) % 4; turn++) await new Promise((resolve) => setImmediate(resolve))
          await cache.set(key, tags.join(','), { tags })
        }),
      )
      const value = await cache.get<string>(key)
      // A Cluster's plain writes may remove their own value when a concurrent one took their membership
      // (over-invalidation); one Redis writes each atomically, so the last one is there.
      if (value === undefined) {
        if (target === 'standalone') wrong.push(`${key}: gone`)
        continue
      }
      const carried = value === '' ? [] : value.split(',')
      for (const tag of ['a', 'b', 'c']) {
        const member = (await members(tag)).includes(layer.prefix + key)
        // Every tag of the live value reaches it; on one Redis no other tag does once the writes resolved.
        if (carried.includes(tag) ? !member : member && target === 'standalone') {
          wrong.push(`${key} [${carried}] ${tag}: ${member}`)
        }
      }
    }
    expect(wrong).toEqual([])
  })
})
