/**
 * Guards. EntityCache.clearAllCache: with a key prefix only that prefix's keys go (every master of a
 * Cluster), another prefix's keys and plain keys stay, and the L1 is emptied; every guard refuses before
 * anything changes; without a prefix it is a FLUSHDB (only ever run on a Redis this file started itself).
 * Bad input to every public method rejects with a typed error and leaves Redis exactly as it was (every
 * key of the prefix and its value compared before and after).
 */
import {
  InvalidKeyError,
  InvalidOperationError,
  InvalidOptionError,
  InvalidTtlError,
  InvalidValueError,
  type LayerCacheError,
} from '@layercache/core'
import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { type ClearAllOptions, EntityCache, type EntityCacheOptions } from '../src'
import { type AnyClient, keysUnder, masters, type Post, post, schemas, snapshot } from './support/fixtures'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const

let cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

function makeCache(
  client: AnyClient,
  keyPrefix: string | undefined,
  options: Partial<EntityCacheOptions> = {},
) {
  const cache = new EntityCache({
    redis: client,
    ...(keyPrefix === undefined ? {} : { keyPrefix }),
    ...schemas(),
    ...options,
  })
  cleanups.push(() => cache.close())
  return cache
}

/** Rows (spread over every master), a list, a plain list, and L1 copies of them. */
async function fill(cache: EntityCache) {
  for (let id = 1; id <= 30; id++) await cache.setEntity('post', post(id))
  await cache.getListPage('feed', { userId: 1 }, { load: () => [post(1), post(2)] })
  await cache.setList('userPosts', { userId: 1 }, [post(1)])
  await cache.invalidateEntity('post', 30)
  expect(await cache.getEntity('post', 1)).toEqual(post(1))
  expect(await cache.getList('userPosts', { userId: 1 })).toEqual([post(1)])
  expect((await cache.getListPage<Post>('feed', { userId: 1 }))?.items).toHaveLength(2)
}

describe.each(TARGETS)('clearAllCache on %s', (target) => {
  it('with a key prefix removes only that prefix’s keys, on every master, and empties the L1', async () => {
    const client = redis.client(target)
    const name = redis.prefix(target, 'clr')
    const cache = makeCache(client, name)
    const other = makeCache(client, redis.prefix(target, 'clr'))
    await fill(cache)
    await fill(other)
    // Keys that share the start of the name without its ':' are not the prefix's.
    const neighbours = [`${name}x`, `${name}0:k`, `${name}`, `plain-${name}`]
    for (const key of neighbours) await client.set(key, '1')
    const mine = await keysUnder(client, cache.keyPrefix)
    expect(mine.length).toBeGreaterThan(40)
    if (target === 'cluster') {
      // The prefix's keys live on every master.
      for (const node of masters(client)) {
        const [, found] = await node.scan('0', 'MATCH', `${cache.keyPrefix}*`, 'COUNT', 10_000)
        expect(found.length).toBeGreaterThan(0)
      }
    }
    const othersBefore = await snapshot(client, other.keyPrefix)

    const result = await cache.clearAllCache({ confirm: 'YES_WIPE_ALL' })
    expect(result).toEqual({ mode: 'scan', deleted: mine.length, keyPrefix: cache.keyPrefix })
    expect(await keysUnder(client, cache.keyPrefix)).toEqual([])
    expect(await snapshot(client, other.keyPrefix)).toEqual(othersBefore)
    for (const key of neighbours) expect(await client.get(key)).toBe('1')
    // The L1 is empty: what it held is read from Redis again (and Redis has nothing).
    expect(await cache.getEntity('post', 1)).toBeUndefined()
    expect(await cache.getList('userPosts', { userId: 1 })).toBeUndefined()
    expect(await cache.getListPage('feed', { userId: 1 })).toBeUndefined()
    // The other cache is untouched, L1 and Redis.
    expect(await other.getEntity('post', 1)).toEqual(post(1))
    expect((await other.getListPage<Post>('feed', { userId: 1 }))?.items).toHaveLength(2)
  })

  it('refuses without the exact confirmation, or in production without allowProduction: nothing changes', async () => {
    const client = redis.client(target)
    const cache = makeCache(client, redis.prefix(target, 'clr'))
    const prod = makeCache(client, cache.keyPrefix, { productionMode: true })
    await fill(cache)
    const before = await snapshot(client, cache.keyPrefix)
    const refusals: [EntityCache, unknown, typeof InvalidOperationError | typeof InvalidOptionError][] = [
      [cache, undefined, InvalidOperationError],
      [cache, null, InvalidOperationError],
      [cache, 'YES_WIPE_ALL', InvalidOperationError],
      [cache, {}, InvalidOperationError],
      [cache, { confirm: 'yes' }, InvalidOperationError],
      [cache, { confirm: 'YES_WIPE_ALL ' }, InvalidOperationError],
      [cache, { confirm: 'yes_wipe_all' }, InvalidOperationError],
      [cache, { confirm: true }, InvalidOperationError],
      [cache, { confirm: 'YES_WIPE_ALL', force: true }, InvalidOptionError],
      [cache, { confirm: 'YES_WIPE_ALL', allowProduction: 'yes' }, InvalidOptionError],
      [prod, { confirm: 'YES_WIPE_ALL' }, InvalidOperationError],
      [prod, { confirm: 'YES_WIPE_ALL', allowProduction: false }, InvalidOperationError],
      [prod, { confirm: 'nope', allowProduction: true }, InvalidOperationError],
    ]
    for (const [which, options, type] of refusals) {
      await expect(
        which.clearAllCache(options as ClearAllOptions),
        JSON.stringify(options),
      ).rejects.toBeInstanceOf(type)
    }
    // NODE_ENV=production is production mode too (read at the call).
    const saved = process.env.NODE_ENV
    process.env.NODE_ENV = 'production'
    try {
      await expect(cache.clearAllCache({ confirm: 'YES_WIPE_ALL' })).rejects.toBeInstanceOf(
        InvalidOperationError,
      )
    } finally {
      if (saved === undefined) delete process.env.NODE_ENV
      else process.env.NODE_ENV = saved
    }
    expect(await snapshot(client, cache.keyPrefix)).toEqual(before)
    // The L1 was kept as well: a row changed behind its back is still answered from it.
    await client.set(`${cache.keyPrefix}e:{post:1}`, JSON.stringify(post(1, 1, 1, 'changed')))
    expect(await cache.getEntity('post', 1)).toEqual(post(1))

    expect((await prod.clearAllCache({ confirm: 'YES_WIPE_ALL', allowProduction: true })).mode).toBe('scan')
    expect(await keysUnder(client, cache.keyPrefix)).toEqual([])
  })
})

type ErrorType =
  | typeof InvalidOptionError
  | typeof InvalidValueError
  | typeof InvalidKeyError
  | typeof InvalidOperationError

// biome-ignore lint/suspicious/noExplicitAny: bad input on purpose
type Bad = any

const circular: Bad = { id: 5, userId: 1, createdAt: 5 }
circular.self = circular
const longText = 'x'.repeat(1100)

/** [what, call, expected error] for every public method. */
function badCalls(cache: EntityCache): [string, () => Promise<unknown>, ErrorType][] {
  const c = cache as Bad
  return [
    ['getEntity: unknown type', () => c.getEntity('nope', 1), InvalidOptionError],
    ['getEntity: list name as type', () => c.getEntity('feed', 1), InvalidOptionError],
    ['getEntity: no id', () => c.getEntity('post'), InvalidValueError],
    ['getEntity: null id', () => c.getEntity('post', null), InvalidValueError],
    ['getEntity: NaN id', () => c.getEntity('post', Number.NaN), InvalidValueError],
    ['getEntity: Infinity id', () => c.getEntity('post', Number.POSITIVE_INFINITY), InvalidValueError],
    ['getEntity: object id', () => c.getEntity('post', { id: 1 }), InvalidValueError],
    ['getEntity: empty id', () => c.getEntity('post', ''), InvalidKeyError],
    ['getEntity: control char id', () => c.getEntity('post', 'a\nb'), InvalidKeyError],
    ['getEntity: id too long', () => c.getEntity('post', 'x'.repeat(513)), InvalidValueError],
    ['getOrLoadEntity: no loader anywhere', () => c.getOrLoadEntity('post', 1), InvalidOptionError],
    ['getOrLoadEntity: loader not a function', () => c.getOrLoadEntity('post', 1, 'x'), InvalidOptionError],
    ['getOrLoadEntity: bad id', () => c.getOrLoadEntity('post', [], () => post(1)), InvalidValueError],
    [
      'getOrLoadEntity: loader gives another id',
      () => c.getOrLoadEntity('post', 9, () => post(8)),
      InvalidValueError,
    ],
    [
      'getOrLoadEntity: loader gives a circular row',
      () => c.getOrLoadEntity('post', 5, () => circular),
      InvalidValueError,
    ],
    ['getEntities: not an array', () => c.getEntities('post', 1), InvalidValueError],
    ['getEntities: a bad id', () => c.getEntities('post', [1, null]), InvalidValueError],
    ['getEntities: unknown type', () => c.getEntities('nope', [1]), InvalidOptionError],
    ['setEntity: null row', () => c.setEntity('post', null), InvalidValueError],
    ['setEntity: string row', () => c.setEntity('post', 'row'), InvalidValueError],
    ['setEntity: no id', () => c.setEntity('post', { userId: 1, createdAt: 1 }), InvalidValueError],
    ['setEntity: bad score', () => c.setEntity('post', { id: 1, createdAt: 'late' }), InvalidValueError],
    ['setEntity: NaN score', () => c.setEntity('post', { id: 1, createdAt: Number.NaN }), InvalidValueError],
    ['setEntity: circular', () => c.setEntity('post', circular), InvalidValueError],
    ['setEntity: BigInt', () => c.setEntity('post', { id: 1, createdAt: 1, big: 1n }), InvalidValueError],
    ['setEntity: unknown type', () => c.setEntity('nope', post(1)), InvalidOptionError],
    ['updateEntityIfExists: bad score', () => c.updateEntityIfExists('post', { id: 1 }), InvalidValueError],
    ['updateEntityIfExists: circular', () => c.updateEntityIfExists('post', circular), InvalidValueError],
    ['updateEntityIfExists: no row', () => c.updateEntityIfExists('post'), InvalidValueError],
    ['invalidateEntity: unknown type', () => c.invalidateEntity('nope', 1), InvalidOptionError],
    ['invalidateEntity: bad id', () => c.invalidateEntity('post', {}), InvalidValueError],
    ['invalidateEntity: empty id', () => c.invalidateEntity('post', ''), InvalidKeyError],
    ['getListPage: unknown list', () => c.getListPage('nope', {}), InvalidOptionError],
    ['getListPage: plain list', () => c.getListPage('userPosts', {}), InvalidOperationError],
    ['getListPage: no params', () => c.getListPage('feed'), InvalidKeyError],
    ['getListPage: array params', () => c.getListPage('feed', [1]), InvalidKeyError],
    ['getListPage: nested params', () => c.getListPage('feed', { a: {} }), InvalidKeyError],
    ['getListPage: NaN param', () => c.getListPage('feed', { a: Number.NaN }), InvalidKeyError],
    ['getListPage: undefined param', () => c.getListPage('feed', { a: undefined }), InvalidKeyError],
    ['getListPage: params too long', () => c.getListPage('feed', { q: longText }), InvalidKeyError],
    ['getListPage: negative offset', () => c.getListPage('feed', {}, { offset: -1 }), InvalidOptionError],
    ['getListPage: fractional offset', () => c.getListPage('feed', {}, { offset: 1.5 }), InvalidOptionError],
    [
      'getListPage: offset past maxSize',
      () => c.getListPage('feed', {}, { offset: 1000 }),
      InvalidOptionError,
    ],
    ['getListPage: zero limit', () => c.getListPage('feed', {}, { limit: 0 }), InvalidOptionError],
    ['getListPage: limit over 200', () => c.getListPage('feed', {}, { limit: 201 }), InvalidOptionError],
    ['getListPage: string limit', () => c.getListPage('feed', {}, { limit: '5' }), InvalidOptionError],
    ['getListPage: unknown option', () => c.getListPage('feed', {}, { sort: 'asc' }), InvalidOptionError],
    ['getListPage: load not a function', () => c.getListPage('feed', {}, { load: [] }), InvalidOptionError],
    [
      'getListPage: load gives no array',
      () => c.getListPage('feed', { u: 1 }, { load: () => 'x' }),
      InvalidValueError,
    ],
    [
      'getListPage: load gives a bad row',
      () => c.getListPage('feed', { u: 2 }, { load: () => [{ id: 1 }] }),
      InvalidValueError,
    ],
    [
      'getListPage: load gives a null row',
      () => c.getListPage('feed', { u: 3 }, { load: () => [null] }),
      InvalidValueError,
    ],
    ['addToList: unknown list', () => c.addToList('nope', {}, post(1)), InvalidOptionError],
    ['addToList: plain list', () => c.addToList('userPosts', {}, post(1)), InvalidOperationError],
    ['addToList: bad params', () => c.addToList('feed', null, post(1)), InvalidKeyError],
    ['addToList: params too long', () => c.addToList('feed', { q: longText }, post(1)), InvalidKeyError],
    ['addToList: bad score', () => c.addToList('feed', { userId: 1 }, { id: 1 }), InvalidValueError],
    ['addToList: no id', () => c.addToList('feed', { userId: 1 }, { createdAt: 1 }), InvalidValueError],
    ['addToList: circular', () => c.addToList('feed', { userId: 1 }, circular), InvalidValueError],
    ['removeFromList: plain list', () => c.removeFromList('userPosts', {}, 1), InvalidOperationError],
    ['removeFromList: bad id', () => c.removeFromList('feed', { userId: 1 }, null), InvalidValueError],
    ['removeFromList: bad params', () => c.removeFromList('feed', 'u=1', 1), InvalidKeyError],
    ['removeFromList: params too long', () => c.removeFromList('feed', { q: longText }, 1), InvalidKeyError],
    ['getList: indexed list', () => c.getList('feed', {}), InvalidOperationError],
    ['getList: unknown list', () => c.getList('nope', {}), InvalidOptionError],
    ['getList: bad params', () => c.getList('userPosts', { a: [] }), InvalidKeyError],
    ['getOrLoadList: no loader anywhere', () => c.getOrLoadList('userPosts', {}), InvalidOptionError],
    ['getOrLoadList: indexed list', () => c.getOrLoadList('feed', {}, () => []), InvalidOperationError],
    [
      'getOrLoadList: loader gives no array',
      () => c.getOrLoadList('userPosts', { u: 4 }, () => 'x'),
      InvalidValueError,
    ],
    [
      'getOrLoadList: circular items',
      () => c.getOrLoadList('userPosts', { u: 5 }, () => [circular]),
      InvalidValueError,
    ],
    ['setList: not an array', () => c.setList('userPosts', { userId: 1 }, { a: 1 }), InvalidValueError],
    ['setList: circular items', () => c.setList('userPosts', { userId: 1 }, [circular]), InvalidValueError],
    ['setList: indexed list', () => c.setList('feed', {}, []), InvalidOperationError],
    ['setList: params too long', () => c.setList('userPosts', { q: longText }, []), InvalidKeyError],
    ['deleteList: unknown list', () => c.deleteList('nope', {}), InvalidOptionError],
    ['deleteList: bad params', () => c.deleteList('userPosts', { a: null }), InvalidKeyError],
    ['deleteList: params too long', () => c.deleteList('userPosts', { q: longText }), InvalidKeyError],
    ['deleteList: indexed, params too long', () => c.deleteList('feed', { q: longText }), InvalidKeyError],
    ['clearAllCache: no options', () => c.clearAllCache(), InvalidOperationError],
    ['clearAllCache: wrong token', () => c.clearAllCache({ confirm: 'YES' }), InvalidOperationError],
    [
      'clearAllCache: unknown option',
      () => c.clearAllCache({ confirm: 'YES_WIPE_ALL', x: 1 }),
      InvalidOptionError,
    ],
  ]
}

describe.each(TARGETS)('bad input on %s', (target) => {
  it('every public method rejects bad input with a typed error and Redis is unchanged', async () => {
    const client = redis.client(target)
    const cache = makeCache(client, redis.prefix(target, 'bad'))
    await cache.setEntity('post', post(1))
    await cache.getListPage('feed', { userId: 1 }, { load: () => [post(1), post(2)] })
    await cache.getListPage('feed', { q: 'x' }, { load: () => [post(1)] })
    await cache.setList('userPosts', { userId: 1 }, [post(1)])
    await cache.invalidateEntity('post', 2)
    const before = await snapshot(client, cache.keyPrefix)
    expect(Object.keys(before).length).toBeGreaterThan(5)

    for (const [what, call, type] of badCalls(cache)) {
      let error: unknown
      try {
        await call()
      } catch (thrown) {
        error = thrown
      }
      expect(error, what).toBeInstanceOf(type)
      expect(await snapshot(client, cache.keyPrefix), what).toEqual(before)
    }
    // Still fully working afterwards.
    expect((await cache.getListPage<Post>('feed', { userId: 1 }))?.items).toEqual([post(1)])
    expect(await cache.getEntity('post', 1)).toEqual(post(1))
  })

  it('bad options refuse to build an EntityCache (typed, nothing touched)', async () => {
    const client = redis.client(target)
    const base = { redis: client, ...schemas() }
    const bad: [string, Bad, typeof LayerCacheError][] = [
      ['no options', undefined, InvalidOptionError],
      ['no redis', { entities: base.entities }, InvalidOptionError],
      ['redis not a client', { ...base, redis: {} }, InvalidOptionError],
      ['unknown option', { ...base, ttl: 1 }, InvalidOptionError],
      ['fenceMs 0', { ...base, fenceMs: 0 }, InvalidOptionError],
      ['commandTimeout fractional', { ...base, commandTimeout: 1.5 }, InvalidOptionError],
      ['bad prefix', { ...base, keyPrefix: 'a\nb' }, InvalidKeyError],
      ['entities not an object', { ...base, entities: null }, InvalidOptionError],
      [
        'bad entity name',
        { ...base, entities: { 'a b': { id: 'id', ttl: 1 } }, lists: {} },
        InvalidOptionError,
      ],
      ['entity without ttl', { ...base, entities: { post: { id: 'id' } }, lists: {} }, InvalidOptionError],
      ['entity bad ttl', { ...base, entities: { post: { id: 'id', ttl: -1 } }, lists: {} }, InvalidTtlError],
      ['entity without id', { ...base, entities: { post: { ttl: 1 } }, lists: {} }, InvalidOptionError],
      [
        'list of unknown entity',
        { ...base, lists: { l: { kind: 'indexed', entity: 'x', score: 's', ttl: 1 } } },
        InvalidOptionError,
      ],
      ['list of unknown kind', { ...base, lists: { l: { kind: 'sorted', ttl: 1 } } }, InvalidOptionError],
      [
        'list maxSize too big',
        { ...base, lists: { l: { kind: 'indexed', entity: 'post', score: 's', ttl: 1, maxSize: 1e6 } } },
        InvalidOptionError,
      ],
      [
        'list named like an entity',
        { ...base, lists: { post: { kind: 'plain', ttl: 1 } } },
        InvalidOptionError,
      ],
      ['stack not a CacheStack', { ...base, stack: {} }, InvalidOptionError],
    ]
    const dbsize = async () => Number(await client.dbsize())
    const size = target === 'standalone' ? await dbsize() : 0
    for (const [what, options, type] of bad) {
      expect(() => new EntityCache(options as EntityCacheOptions), what).toThrow(type)
    }
    if (target === 'standalone') expect(await dbsize()).toBe(size)
  })
})

describe('clearAllCache without a key prefix: FLUSHDB', () => {
  it('on a standalone Redis started for this test', async () => {
    const server: RedisServerHandle = await startRedisServer()
    const client = new Redis(server.url)
    cleanups.push(async () => {
      client.disconnect()
      await server.stop()
    })
    const cache = makeCache(client, undefined)
    expect(cache.keyPrefix).toBe('')
    await fill(cache)
    await client.set('someone-else', '1')
    const size = await client.dbsize()
    await expect(cache.clearAllCache({ confirm: 'YES' as 'YES_WIPE_ALL' })).rejects.toBeInstanceOf(
      InvalidOperationError,
    )
    expect(await client.dbsize()).toBe(size)
    expect(await cache.clearAllCache({ confirm: 'YES_WIPE_ALL' })).toEqual({
      mode: 'flushdb',
      deleted: size,
      keyPrefix: '',
    })
    expect(await client.dbsize()).toBe(0)
    expect(await cache.getEntity('post', 1)).toBeUndefined()
  })

  it('on every master of the Cluster this file started (its last test there)', async () => {
    const client = redis.client('cluster')
    const cache = makeCache(client, undefined)
    await fill(cache)
    const sizes = await Promise.all(masters(client).map((node) => node.dbsize()))
    expect(sizes.every((size) => size > 0)).toBe(true)
    const result = await cache.clearAllCache({ confirm: 'YES_WIPE_ALL' })
    expect(result.mode).toBe('flushdb')
    expect(result.deleted).toBe(sizes.reduce((sum, size) => sum + size, 0))
    for (const node of masters(client)) expect(await node.dbsize()).toBe(0)
    expect(await cache.getList('userPosts', { userId: 1 })).toBeUndefined()
  })
})
