import { InvalidOptionError } from '@layercache/core'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { EntityCache, type EntityCacheOptions } from '../src'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const

interface Post {
  id: number
  userId: number
  title: string
  createdAt: number
}

const post = (id: number, userId = 1, createdAt = id): Post => ({
  id,
  userId,
  title: `post ${id}`,
  createdAt,
})

function makeCache(target: (typeof TARGETS)[number], overrides: Partial<EntityCacheOptions> = {}) {
  const db = new Map<number, Post>()
  const calls = { feed: 0, rows: 0 }
  const cache = new EntityCache({
    redis: redis.client(target),
    keyPrefix: redis.prefix(target, 'ent'),
    entities: {
      post: {
        id: 'id',
        ttl: 60_000,
        load: (ids) => {
          calls.rows++
          return ids.map((id) => db.get(Number(id))).filter((row) => row !== undefined)
        },
      },
    },
    lists: {
      userFeed: {
        kind: 'indexed',
        entity: 'post',
        score: 'createdAt',
        maxSize: 50,
        ttl: 60_000,
        trackMembership: true,
        load: ({ userId }) => {
          calls.feed++
          return [...db.values()].filter((row) => row.userId === userId)
        },
      },
      recent: {
        kind: 'indexed',
        entity: 'post',
        score: 'createdAt',
        maxSize: 5,
        ttl: 60_000,
        trackMembership: true,
        load: () => [...db.values()],
      },
      untracked: {
        kind: 'indexed',
        entity: 'post',
        score: 'createdAt',
        ttl: 60_000,
        load: () => [...db.values()],
      },
      userPosts: { kind: 'plain', ttl: 60_000 },
    },
    ...overrides,
  })
  return { cache, db, calls }
}

describe.each(TARGETS)('EntityCache on %s', (target) => {
  it('caches a row, refreshes it only if cached, and invalidates it', async () => {
    const { cache, db } = makeCache(target)
    db.set(1, post(1))
    expect(await cache.getEntity('post', 1)).toBeUndefined()
    expect(await cache.updateEntityIfExists('post', { ...post(1), title: 'x' })).toBe(false)
    expect(await cache.getEntity('post', 1)).toBeUndefined()
    expect(await cache.getOrLoadEntity('post', 1)).toEqual(post(1))
    expect(await cache.getEntity('post', '1')).toEqual(post(1))
    expect(await cache.updateEntityIfExists('post', { ...post(1), title: 'new' })).toBe(true)
    expect(await cache.getEntity<Post>('post', 1)).toMatchObject({ title: 'new' })
    expect(await cache.invalidateEntity('post', 1)).toBe(1)
    expect(await cache.getEntity('post', 1)).toBeUndefined()
    expect(await cache.invalidateEntity('post', 1)).toBe(0)
    expect(await cache.updateEntityIfExists('post', post(1))).toBe(false)
  })

  it('removes an invalidated row from every tracked list that holds it', async () => {
    const { cache, db } = makeCache(target)
    for (let id = 1; id <= 8; id++) db.set(id, post(id, id % 2))
    const feed1 = await cache.getListPage<Post>('userFeed', { userId: 1 }, { limit: 10 })
    expect(feed1?.items.map((row) => row.id)).toEqual([7, 5, 3, 1])
    expect((await cache.getListPage<Post>('recent', {}))?.items.map((row) => row.id)).toEqual([8, 7, 6, 5, 4])
    expect((await cache.getListPage<Post>('untracked', {}))?.total).toBe(8)
    db.delete(7)
    // The row, userFeed {userId: 1} and recent.
    expect(await cache.invalidateEntity('post', 7)).toBe(3)
    expect((await cache.getListPage<Post>('userFeed', { userId: 1 }))?.items.map((row) => row.id)).toEqual([
      5, 3, 1,
    ])
    expect((await cache.getListPage<Post>('recent', {}))?.items.map((row) => row.id)).toEqual([8, 6, 5, 4])
    // Untracked lists keep the id but a page never shows a row that is gone.
    const untracked = await cache.getListPage<Post>('untracked', {}, { limit: 10 })
    expect(untracked?.items.map((row) => row.id)).toEqual([8, 6, 5, 4, 3, 2, 1])
  })

  it('adds to cached lists only, trims to maxSize and pages', async () => {
    const { cache, db } = makeCache(target)
    for (let id = 1; id <= 5; id++) db.set(id, post(id))
    expect(await cache.addToList('recent', {}, post(9))).toBe(false) // not cached: no partial list
    expect(
      (await cache.getListPage<Post>('recent', {}, { limit: 2, offset: 1 }))?.items.map((r) => r.id),
    ).toEqual([4, 3])
    expect(await cache.addToList('recent', {}, post(9))).toBe(true)
    const page = await cache.getListPage<Post>('recent', {}, { limit: 10 })
    expect(page?.items.map((row) => row.id)).toEqual([9, 5, 4, 3, 2])
    expect(page?.total).toBe(5)
    expect(await cache.getEntity('post', 9)).toEqual(post(9))
    expect(await cache.removeFromList('recent', {}, 9)).toBe(true)
    expect((await cache.getListPage<Post>('recent', {}, { limit: 10 }))?.items.map((r) => r.id)).toEqual([
      5, 4, 3, 2,
    ])
  })

  it('re-scores a row in its lists when it is updated', async () => {
    const { cache, db } = makeCache(target)
    for (let id = 1; id <= 3; id++) db.set(id, post(id))
    await cache.getListPage('userFeed', { userId: 1 })
    expect(await cache.updateEntityIfExists('post', { ...post(1), createdAt: 100 })).toBe(true)
    const page = await cache.getListPage<Post>('userFeed', { userId: 1 })
    expect(page?.items.map((row) => row.id)).toEqual([1, 3, 2])
  })

  it('caches plain lists and deletes them', async () => {
    const { cache } = makeCache(target)
    let loads = 0
    const load = () => {
      loads++
      return [post(1), post(2)]
    }
    expect(await cache.getList('userPosts', { userId: 1 })).toBeUndefined()
    expect(await cache.getOrLoadList('userPosts', { userId: 1 }, load)).toHaveLength(2)
    expect(await cache.getOrLoadList('userPosts', { userId: '1' }, load)).toHaveLength(2)
    expect(loads).toBe(1)
    expect(await cache.deleteList('userPosts', { userId: 1 })).toBe(1)
    expect(await cache.getList('userPosts', { userId: 1 })).toBeUndefined()
    await cache.setList('userPosts', { userId: 1 }, [post(3)])
    expect(await cache.getList('userPosts', { userId: 1 })).toEqual([post(3)])
  })

  it('refuses bad input before touching anything', async () => {
    const { cache } = makeCache(target)
    await expect(cache.getEntity('nope', 1)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.setEntity('post', { title: 'no id', createdAt: 1 })).rejects.toThrow(/post id/)
    await expect(cache.addToList('recent', {}, { id: 1 })).rejects.toThrow(/score/)
    await expect(cache.getListPage('recent', {}, { limit: 1000 })).rejects.toThrow(/limit/)
    await expect(cache.getListPage('userPosts', {})).rejects.toThrow(/plain list/)
    await expect(cache.deleteList('recent', { bad: {} as never })).rejects.toThrow(/param/)
    expect(() => makeCache(target, { fenceMs: -1 })).toThrow(InvalidOptionError)
  })
})
