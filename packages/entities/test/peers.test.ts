/**
 * Two instances, each with its own L1 and a signed RedisInvalidationBus: what one invalidates, updates or
 * deletes, the other stops answering from its L1 (bounded polling: the bus is asynchronous).
 */
import { CacheStack } from '@layercache/core'
import { RedisInvalidationBus } from '@layercache/distributed'
import { MemoryLayer } from '@layercache/layer-memory'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import { type AnyClient, eventually, type Post, post, redisKeys, schemas } from './support/fixtures'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]
const SECRET = 'a-secret-of-32-characters-long!!'

let cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

function subscriberFor(client: AnyClient): AnyClient {
  const subscriber = client.isCluster
    ? (client as Cluster).duplicate(undefined, { shardedSubscribers: true })
    : (client as Redis).duplicate()
  subscriber.on('error', () => {})
  return subscriber
}

async function peers(target: Target) {
  const client = redis.client(target)
  const keyPrefix = redis.prefix(target, 'peer')
  const open = async () => {
    const subscriber = subscriberFor(client)
    const bus = new RedisInvalidationBus({
      publisher: client,
      subscriber,
      channel: `${keyPrefix}:bus`,
      signingSecret: SECRET,
      heartbeatMs: 1000,
    })
    const stack = new CacheStack([new MemoryLayer({ ttl: 60_000 })], { invalidationBus: bus })
    const cache = new EntityCache({ redis: client, keyPrefix, stack, ...schemas() })
    cleanups.push(async () => {
      cache.close()
      stack.close()
      await bus.close()
      subscriber.disconnect()
    })
    await bus.ready
    return { cache, stack }
  }
  const [a, b] = await Promise.all([open(), open()])
  return { a, b, client, keys: redisKeys(a.cache.keyPrefix) }
}

const ids = (page: { items: readonly Post[] } | undefined) => page?.items.map((row) => row.id)

describe.each(TARGETS)('peers over the bus on %s', (target) => {
  it('invalidateEntity and updateEntityIfExists on A reach B’s L1 (row and list pages)', async () => {
    const { a, b, client, keys } = await peers(target)
    await a.cache.getListPage('feed', { userId: 1 }, { load: () => [post(1, 1, 10), post(2, 1, 20)] })
    expect(await b.cache.getEntity('post', 1)).toEqual(post(1, 1, 10))
    expect(ids(await b.cache.getListPage<Post>('feed', { userId: 1 }))).toEqual([2, 1])
    // B answers from its L1: a change made behind the engine's back is not seen.
    await client.set(keys.row(1), JSON.stringify(post(1, 1, 10, 'behind')))
    await client.zrem(keys.list('feed', 'userId=1'), '2')
    expect(await b.cache.getEntity<Post>('post', 1)).toMatchObject({ title: 'post 1' })
    expect(ids(await b.cache.getListPage<Post>('feed', { userId: 1 }))).toEqual([2, 1])
    await client.zadd(keys.list('feed', 'userId=1'), 20, '2')

    expect(await a.cache.updateEntityIfExists('post', post(1, 1, 30, 'updated'))).toBe(true)
    await eventually(
      async () => (await b.cache.getEntity<Post>('post', 1))?.title === 'updated',
      'B reads the update',
    )
    await eventually(
      async () => ids(await b.cache.getListPage<Post>('feed', { userId: 1 }))?.[0] === 1,
      'B’s page is re-scored',
    )
    expect(ids(await b.cache.getListPage<Post>('feed', { userId: 1 }))).toEqual([1, 2])

    expect(await a.cache.invalidateEntity('post', 2)).toBe(2)
    await eventually(async () => (await b.cache.getEntity('post', 2)) === undefined, 'B drops the row')
    await eventually(
      async () => ids(await b.cache.getListPage<Post>('feed', { userId: 1 }))?.join() === '1',
      'B’s page drops the row',
    )
    expect((await b.cache.getListPage<Post>('feed', { userId: 1 }))?.total).toBe(1)
  })

  it('addToList, removeFromList, setList and deleteList on A reach B’s L1', async () => {
    const { a, b } = await peers(target)
    await a.cache.getListPage('recent', {}, { load: () => [post(1)] })
    expect(ids(await b.cache.getListPage<Post>('recent', {}))).toEqual([1])
    expect(await a.cache.addToList('recent', {}, post(5))).toBe(true)
    await eventually(
      async () => ids(await b.cache.getListPage<Post>('recent', {}))?.join() === '5,1',
      'B sees the add',
    )
    expect(await a.cache.removeFromList('recent', {}, 1)).toBe(true)
    await eventually(
      async () => ids(await b.cache.getListPage<Post>('recent', {}))?.join() === '5',
      'B sees the removal',
    )
    expect(await a.cache.deleteList('recent', {})).toBe(1)
    await eventually(async () => (await b.cache.getListPage('recent', {})) === undefined, 'B sees the delete')

    await a.cache.setList('userPosts', { userId: 1 }, [post(1)])
    expect(await b.cache.getList('userPosts', { userId: 1 })).toEqual([post(1)])
    await a.cache.setList('userPosts', { userId: 1 }, [post(2)])
    await eventually(
      async () => (await b.cache.getList<Post>('userPosts', { userId: 1 }))?.[0]?.id === 2,
      'B sees the new plain list',
    )
    expect(await a.cache.deleteList('userPosts', { userId: 1 })).toBe(1)
    await eventually(
      async () => (await b.cache.getList('userPosts', { userId: 1 })) === undefined,
      'B sees the plain list deleted',
    )
    expect(await b.cache.getOrLoadList('userPosts', { userId: 1 }, () => [post(3)])).toEqual([post(3)])
  })

  it('setEntity on A reaches B’s L1', async () => {
    const { a, b } = await peers(target)
    await a.cache.setEntity('post', post(1))
    expect(await b.cache.getEntity('post', 1)).toEqual(post(1))
    await a.cache.setEntity('post', post(1, 1, 1, 'v2'))
    await eventually(async () => (await b.cache.getEntity<Post>('post', 1))?.title === 'v2', 'B reads v2')
  })
})
