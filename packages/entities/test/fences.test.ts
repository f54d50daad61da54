/**
 * Fences added after review: a rebuild joined after an invalidation, epochs that expired and restart,
 * setList against a load in flight, setEntity moving a row into a page that did not hold it, and a
 * write-back that fails after the load answered.
 */
import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { EntityCache, type EntityCacheOptions } from '../src'
import { eventually, gate, type Post, post, schemas } from './support/fixtures'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const

function cacheOn(target: (typeof TARGETS)[number], overrides: Partial<EntityCacheOptions> = {}) {
  const prefix = redis.prefix(target, 'fences')
  const client = redis.client(target)
  const cache = new EntityCache({ redis: client, keyPrefix: prefix, ...schemas(), ...overrides })
  return { cache, client, prefix: `${prefix}:` }
}

const ids = (page: { items: readonly Post[] } | undefined) => page?.items.map((row) => row.id)

describe.each(TARGETS)('on %s', (target) => {
  it('a page read that joins a rebuild begun before an invalidation never shows the invalidated row', async () => {
    const { cache } = cacheOn(target)
    const db = new Map([1, 2, 3, 4, 5].map((id) => [id, post(id)]))
    const entered = gate()
    const release = gate()
    const load = async () => {
      const rows = [...db.values()]
      entered.open()
      await release.promise
      return rows
    }
    const first = cache.getListPage<Post>('feed', { userId: 1 }, { load, limit: 10 })
    await entered.promise
    db.delete(5)
    await cache.invalidateEntity('post', 5)
    // Begins after the invalidation resolved, while the first rebuild (which read row 5) still runs.
    const second = cache.getListPage<Post>('feed', { userId: 1 }, { load: () => [...db.values()], limit: 10 })
    release.open()
    await first
    expect(ids(await second)).toEqual([4, 3, 2, 1])
    expect(ids(await cache.getListPage<Post>('feed', { userId: 1 }, { limit: 10 }))).toEqual([4, 3, 2, 1])
  })

  it('an epoch that expired restarts above every value it held (no ABA)', async () => {
    const { cache, client, prefix } = cacheOn(target, { fenceMs: 200 })
    const epochKey = `${prefix}e:{post:1}:v`
    await cache.setEntity('post', post(1))
    await cache.invalidateEntity('post', 1)
    const before = Number(await client.get(epochKey))
    expect(await client.pttl(epochKey)).toBeGreaterThan(0)
    // Time must pass: the epoch lives fenceMs (200 ms) in Redis; poll until Redis has let it expire.
    await eventually(async () => (await client.exists(epochKey)) === 0, 'the epoch expires', 10_000, 20)
    await cache.invalidateEntity('post', 1)
    const after = Number(await client.get(epochKey))
    expect(after).toBeGreaterThan(before)
    expect(after).toBeGreaterThan(1_000_000_000_000_000) // the server's clock in µs, not 1
  })

  it('setList stops a getOrLoadList that began before it from writing what it loaded', async () => {
    const { cache } = cacheOn(target)
    const entered = gate()
    const release = gate()
    const loading = cache.getOrLoadList<Post>('userPosts', { userId: 1 }, async () => {
      entered.open()
      await release.promise
      return [post(1)] // read before the change below
    })
    await entered.promise
    await cache.setList('userPosts', { userId: 1 }, [post(1), post(2)])
    release.open()
    await loading
    const other = new EntityCache({ redis: redis.client(target), keyPrefix: cache.keyPrefix, ...schemas() })
    expect(await other.getList('userPosts', { userId: 1 })).toEqual([post(1), post(2)])
    other.close()
  })

  it('setEntity moving a row up drops cached pages of its lists that did not hold it', async () => {
    const { cache } = cacheOn(target)
    const load = () => [post(1), post(2), post(3)]
    expect(ids(await cache.getListPage<Post>('feed', { userId: 1 }, { load, limit: 2 }))).toEqual([3, 2])
    await cache.setEntity('post', post(1, 1, 100))
    expect(ids(await cache.getListPage<Post>('feed', { userId: 1 }, { load, limit: 2 }))).toEqual([1, 3])
  })
})

describe('a write-back failing after the load answered', () => {
  it('getOrLoadEntity still answers with what it loaded', async () => {
    let server: RedisServerHandle | undefined
    try {
      server = await startRedisServer()
      const own = new Redis(server.url)
      own.on('error', () => {})
      const cache = new EntityCache({ redis: own, keyPrefix: 'wb', commandTimeout: 300, ...schemas() })
      const paused = server
      const row = await cache.getOrLoadEntity<Post>('post', 7, async () => {
        paused.pause() // Redis stops answering between the read and the write-back
        return post(7)
      })
      expect(row).toEqual(post(7))
      paused.resume()
      cache.close()
      own.disconnect()
    } finally {
      server?.resume()
      await server?.stop()
    }
  })
})
