/**
 * Every Redis structure of the engine expires: rows, lists, memberships, epochs, tombstones and counters
 * all carry a TTL, so after a burst of every kind of operation nothing of the prefix is left once the TTLs
 * ran out. A membership outlives the lists it names, so invalidateEntity finds a list as long as it exists.
 */
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { afterEach, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import { eventually, keysUnder, post, redisKeys, schemas } from './support/fixtures'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]

let opened: EntityCache[] = []
afterEach(() => {
  for (const cache of opened) cache.close()
  opened = []
})

function makeCache(target: Target, entityTtl: number, listTtl: number, fenceMs: number) {
  const cache = new EntityCache({
    redis: redis.client(target),
    keyPrefix: redis.prefix(target, 'ttl'),
    fenceMs,
    ...schemas({ entityTtl, listTtl }),
  })
  opened.push(cache)
  return { cache, client: redis.client(target), keys: redisKeys(cache.keyPrefix) }
}

describe.each(TARGETS)('expiry on %s', (target) => {
  it('every key of every operation has a TTL, and once they ran out no key of the prefix is left', async () => {
    const { cache, client } = makeCache(target, 800, 800, 500)
    await cache.setEntity('post', post(1))
    await cache.getListPage('feed', { userId: 1 }, { load: () => [post(1), post(2)] })
    await cache.addToList('feed', { userId: 1 }, post(3))
    await cache.addToList('recent', {}, post(4)) // not cached: moves the list's epoch only
    await cache.getListPage('recent', {}, { load: () => [] })
    await cache.addToList('recent', {}, post(4))
    await cache.getListPage('untracked', {}, { load: () => [post(5)] })
    await cache.addToList('untracked', {}, post(6))
    await cache.updateEntityIfExists('post', { ...post(1), title: 'new' })
    await cache.updateEntityIfExists('post', post(98))
    await cache.removeFromList('feed', { userId: 1 }, 3)
    await cache.deleteList('feed', { userId: 9 })
    await cache.getOrLoadEntity('post', 7, () => post(7))
    await cache.getEntities('post', [1, 7, 8])
    await cache.setEntity('user', { id: 1 })
    await cache.invalidateEntity('user', 1)
    await cache.setList('userPosts', { userId: 1 }, [post(1)])
    await cache.getOrLoadList('userPosts', { userId: 2 }, () => [post(2)])
    await cache.deleteList('userPosts', { userId: 1 })
    await cache.deleteList('userPosts', { userId: 3 })
    await cache.invalidateEntity('post', 2)
    await cache.invalidateEntity('post', 4)
    await cache.invalidateEntity('post', 99)

    const keys = await keysUnder(client, cache.keyPrefix)
    const kinds = new Set(keys.map((key) => key.slice(cache.keyPrefix.length).replace(/\{[^}]*\}/, '{}')))
    // rows, memberships, epochs, lists, markers, tombstones, counter, plain lists
    for (const kind of ['e:{}', 'e:{}:m', 'e:{}:v', 'l:{}', 'l:{}:k', 'l:{}:v', 'l:{}:t:2', 't:{}', 'p:{}']) {
      expect(kinds, kind).toContain(kind)
    }
    const forever: string[] = []
    for (const key of keys) if ((await client.pttl(key)) === -1) forever.push(key) // -2: expired already
    expect(forever).toEqual([])
    await eventually(
      async () => (await keysUnder(client, cache.keyPrefix)).length === 0,
      'every key of the prefix expires',
      10_000,
      50,
    )
  })

  it('a membership outlives its lists: invalidateEntity finds a list until the list itself is gone', async () => {
    const { cache, client, keys } = makeCache(target, 200, 1500, 200)
    await cache.getListPage('feed', { userId: 1 }, { load: () => [post(1)] })
    await cache.addToList('feed', { userId: 1 }, post(2))
    const list = keys.list('feed', 'userId=1')
    const loaded = keys.loaded('feed', 'userId=1')
    for (const id of [1, 2]) {
      const [members, listTtl, loadedTtl] = await Promise.all([
        client.pttl(keys.members(id)),
        client.pttl(list),
        client.pttl(loaded),
      ])
      expect(listTtl).toBeGreaterThan(0)
      expect(members).toBeGreaterThan(listTtl)
      expect(members).toBeGreaterThan(loadedTtl)
    }
    // The rows expire first; their memberships still name the list.
    await eventually(
      async () => (await client.exists(keys.row(1))) + (await client.exists(keys.row(2))) === 0,
      'rows expire',
    )
    expect(await client.exists(list, loaded)).toBe(2)
    expect(await cache.invalidateEntity('post', 1)).toBe(1) // no row, out of one list
    expect(await client.zscore(list, '1')).toBeNull()
    expect(await client.zscore(list, '2')).not.toBeNull()
    // The list expires; the membership of row 2 still exists a little longer, naming a list that is gone.
    await eventually(async () => (await client.exists(list, loaded)) === 0, 'the list expires')
    if ((await client.exists(keys.members(2))) === 1) {
      expect(await cache.invalidateEntity('post', 2)).toBe(0)
      expect(await client.exists(list, loaded)).toBe(0) // nothing recreated
    }
    await eventually(
      async () => (await keysUnder(client, cache.keyPrefix)).length === 0,
      'every key of the prefix expires',
      10_000,
      50,
    )
  })
})
