/**
 * Membership over many lists: a row held by 100 (and 300) tracked lists leaves every one of them in one
 * invalidateEntity, checked in the sorted sets themselves; other rows keep theirs; a row held by no list
 * costs what a plain DEL costs.
 */
import { duplicateClient } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { afterEach, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import {
  type AnyClient,
  countCommands,
  keysUnder,
  type Post,
  post,
  redisKeys,
  schemas,
} from './support/fixtures'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]

let opened: { cache: EntityCache; client?: AnyClient }[] = []
afterEach(() => {
  for (const { cache, client } of opened) {
    cache.close()
    client?.disconnect()
  }
  opened = []
})

function makeCache(target: Target, own = false) {
  const client = own ? duplicateClient(redis.client(target)) : redis.client(target)
  const cache = new EntityCache({ redis: client, keyPrefix: redis.prefix(target, 'mem'), ...schemas() })
  opened.push({ cache, ...(own ? { client } : {}) })
  return { cache, client, keys: redisKeys(cache.keyPrefix) }
}

/** Builds `feed` for userId 1..count holding `rows`: half by rebuild, half by addToList on an empty list. */
async function buildFeeds(cache: EntityCache, count: number, rows: readonly Post[]) {
  for (let user = 1; user <= count; user++) {
    if (user % 2 === 0) {
      await cache.getListPage('feed', { userId: user }, { load: () => rows })
    } else {
      await cache.getListPage('feed', { userId: user }, { load: () => [] })
      for (const row of rows) expect(await cache.addToList('feed', { userId: user }, row)).toBe(true)
    }
  }
}

describe.each(TARGETS)('membership over many lists on %s', (target) => {
  it('a row in 100 tracked lists leaves all of them in one invalidateEntity; other rows stay', {
    timeout: 30_000,
  }, async () => {
    const { cache, client, keys } = makeCache(target)
    const [hot, other] = [post(42, 1, 100), post(43, 1, 50)]
    await buildFeeds(cache, 100, [hot, other])
    // A few lists hold only the other row, and `recent` holds the hot one too.
    await cache.getListPage('recent', {}, { load: () => [hot] })
    for (let user = 101; user <= 103; user++) {
      await cache.getListPage('feed', { userId: user }, { load: () => [other] })
    }
    const listKeys = Array.from({ length: 100 }, (_, i) => keys.list('feed', `userId=${i + 1}`))
    for (const key of listKeys) expect(await client.zscore(key, '42')).toBe('100')
    expect(await client.scard(keys.members(42))).toBe(101)
    const page = await cache.getListPage<Post>('feed', { userId: 7 })
    expect(page?.items.map((row) => row.id)).toEqual([42, 43])

    expect(await cache.invalidateEntity('post', 42)).toBe(102) // the row + 100 feeds + recent

    for (const key of listKeys) {
      expect(await client.zscore(key, '42')).toBeNull()
      expect(await client.zscore(key, '43')).toBe('50')
    }
    expect(await client.zcard(keys.list('recent', ''))).toBe(0)
    expect(await client.exists(keys.row(42), keys.members(42))).toBe(0)
    // The other row keeps its value, its membership (100 + 3 lists) and its place everywhere.
    expect(await client.exists(keys.row(43))).toBe(1)
    expect(await client.scard(keys.members(43))).toBe(103)
    for (let user = 101; user <= 103; user++) {
      expect(await client.zscore(keys.list('feed', `userId=${user}`), '43')).toBe('50')
    }
    // No key mentions 42 but the tombstones, which expire (they fence adds that began earlier).
    const prefix = cache.keyPrefix
    const left = (await keysUnder(client, prefix)).filter((key) => /[{:]42\b/.test(key.slice(prefix.length)))
    // 101 tombstones and the row's epoch.
    expect(left.filter((key) => key.endsWith(':t:42'))).toHaveLength(101)
    expect(left.filter((key) => !key.endsWith(':t:42'))).toEqual([`${keys.row(42)}:v`])
    for (const key of left) expect(await client.pttl(key)).toBeGreaterThan(0)
    // Pages read through L1 no longer show it either.
    expect((await cache.getListPage<Post>('feed', { userId: 7 }))?.items.map((row) => row.id)).toEqual([43])
    expect(await cache.getEntity('post', 42)).toBeUndefined()
    expect(await cache.getEntity('post', 43)).toEqual(other)
    expect(await cache.invalidateEntity('post', 42)).toBe(0)
  })

  it('a row in 300 tracked lists (more than one L1 invalidation can name) is invalidated everywhere', {
    timeout: 30_000,
  }, async () => {
    const { cache, client, keys } = makeCache(target)
    const row = post(7, 1, 10)
    for (let user = 1; user <= 300; user++) {
      await cache.getListPage('feed', { userId: user }, { load: () => [row] })
    }
    // This instance's L1 holds a page of the last list (tagged by the list and by the row).
    expect((await cache.getListPage<Post>('feed', { userId: 300 }))?.items).toEqual([row])
    expect(await cache.invalidateEntity('post', 7)).toBe(301)
    for (let user = 1; user <= 300; user++) {
      expect(await client.zscore(keys.list('feed', `userId=${user}`), '7')).toBeNull()
    }
    expect((await cache.getListPage<Post>('feed', { userId: 300 }))?.items).toEqual([])
  })

  it('a row in no list costs one round trip on standalone, like a plain DEL', async () => {
    const { cache, client, keys } = makeCache(target, true)
    await cache.setEntity('post', post(1))
    await cache.setEntity('user', { id: 1 })
    await cache.invalidateEntity('post', 999) // the scripts are loaded on every node now
    await cache.invalidateEntity('user', 999)

    const cost = async (work: () => Promise<unknown>) => {
      const counted = countCommands(client)
      try {
        await work()
      } finally {
        counted.stop()
      }
      return counted.names
    }
    const plainDelete = await cost(() => client.del(keys.row(2)))
    expect(plainDelete).toEqual(['del'])
    expect(await client.exists(keys.row(1))).toBe(1)
    const invalidatePost = await cost(async () => expect(await cache.invalidateEntity('post', 1)).toBe(1))
    const invalidateUser = await cost(async () => expect(await cache.invalidateEntity('user', 1)).toBe(1))
    const onMissing = await cost(async () => expect(await cache.invalidateEntity('post', 1)).toBe(0))
    expect(await client.exists(keys.row(1))).toBe(0)
    // A type no indexed list holds needs no invalidation counter: one script everywhere.
    expect(invalidateUser).toEqual(['evalsha'])
    if (target === 'standalone') {
      expect(invalidatePost).toHaveLength(plainDelete.length)
      expect(onMissing).toHaveLength(plainDelete.length)
    } else {
      // On a Cluster the type's counter (its own slot) moves first: one more round trip.
      expect(invalidatePost).toEqual(['evalsha', 'evalsha'])
      expect(onMissing).toHaveLength(2)
    }
  })

  it('a row in lists costs at most two round trips on standalone (membership read, then atomic)', async () => {
    if (target === 'cluster') return
    const { cache, client } = makeCache(target, true)
    await buildFeeds(cache, 10, [post(5)])
    await cache.invalidateEntity('post', 999)
    const counted = countCommands(client)
    try {
      expect(await cache.invalidateEntity('post', 5)).toBe(11)
    } finally {
      counted.stop()
    }
    expect(counted.names.length).toBeLessThanOrEqual(2)
  })
})
