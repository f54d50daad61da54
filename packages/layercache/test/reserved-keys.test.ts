/**
 * Keys starting with '~' are where a RedisLayer keeps its own structures (key-index shards, tag sets and
 * epochs, counters, the shared generation, the invalidation log). No public call may name one: a refused
 * call throws the typed error and changes nothing, in Redis, in memory or in the stats. And an
 * invalidation of everything ('' prefix, '*' pattern) removes every cache key and none of those.
 */
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CacheStack,
  InvalidKeyError,
  InvalidPatternError,
  type LayerCacheError,
  layoutKeyOf,
  MemoryLayer,
  RedisLayer,
  shardsOf,
  WriteBehind,
} from '../src'

let redis: TestRedis
let client: Redis
let n = 0

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis?.close())

const USERS = Array.from({ length: 32 }, (_, i) => `user:${i}`)

/** A stack (memory over Redis, key index in 4 shards) holding 32 tagged users, one with a dependent. */
async function seeded(options: { keyIndex?: boolean } = {}) {
  const prefix = `${redis.keyPrefix}rk${++n}:`
  const memory = new MemoryLayer({ ttl: 600_000 })
  const layer = new RedisLayer({
    client,
    prefix,
    ...(options.keyIndex === false ? { keyIndex: false } : { knownKeysShards: 4 }),
  })
  const cache = new CacheStack([memory, layer])
  for (const key of USERS) await cache.set(key, { key }, { tags: ['users'] })
  await cache.set('profile:0', 'p0', { dependsOn: ['user:0'] })
  await cache.bumpKeyVersion('catalog')
  await layer.bumpSharedGeneration(0)
  return { prefix, memory, layer, cache }
}

type Seeded = Awaited<ReturnType<typeof seeded>>

/**
 * Every Redis key under the prefix with its DUMP, the memory layer's keys and values, the stats. Per-layer
 * misses are left out: get and getOrSet check the rest of a key only after missing in memory (keeping
 * the hit path short), so a refused key counts that one memory miss, as a key with a control character
 * does.
 */
async function state({ prefix, memory, cache }: Seeded) {
  const keys = (await client.keys(`${prefix}*`)).sort()
  const dumps = await Promise.all(keys.map((key) => client.dumpBuffer(key)))
  const { layers, ...stats } = cache.getStats()
  return {
    layers: layers.map(({ name, hits, errors }) => ({ name, hits, errors })),
    redis: keys.map((key, i) => [key, dumps[i]?.toString('hex')]),
    memory: [...memory.keys()].sort().map((key) => [key, memory.get(key)?.value]),
    stats,
  }
}

/** Runs `call`: it must fail with `type` (thrown or rejected) and leave everything as it was. */
async function expectRefused(
  s: Seeded,
  what: string,
  call: () => unknown,
  type: new (...args: never[]) => LayerCacheError = InvalidKeyError,
) {
  const before = await state(s)
  let error: unknown
  try {
    await call()
  } catch (caught) {
    error = caught
  }
  // Soft: one run reports every path that lets a reserved key through.
  expect.soft(error, `${what}: expected ${type.name}`).toBeInstanceOf(type)
  expect.soft((error as Error | undefined)?.message, what).toContain('"~" are reserved')
  expect.soft(await state(s), `${what} changed something`).toEqual(before)
}

/** The layer's own keys, as a caller of the stack would have to spell them (without the layer prefix). */
function internalKeys(prefix: string): string[] {
  const own = (full: string) => full.slice(prefix.length)
  const [shard] = shardsOf(prefix, 4)
  return [
    own(shard!.keysKey),
    own(shard!.expiryKey),
    own(shard!.tagsKey),
    own(layoutKeyOf(prefix)),
    '~t:users',
    '~te:users',
    '~v:catalog',
    '~gen',
    '~',
  ]
}

describe('the "~" key space is reserved on every public path', () => {
  it('no call reaches a key-index shard, a tag set, a counter or the generation; invalidation still works', {
    timeout: 120_000,
  }, async () => {
    const s = await seeded()
    const { cache, prefix } = s
    const shard = shardsOf(prefix, 4)[0]!.keysKey
    expect(await client.exists(shard)).toBe(1)
    const loader = () => 'loaded'
    const queue = new WriteBehind({
      cache,
      client,
      queue: `${redis.keyPrefix}rk-queue`,
      writer: async () => {},
    })
    for (const key of internalKeys(prefix)) {
      const refuse = (what: string, call: () => unknown) => expectRefused(s, `${what} ${key}`, call)
      await refuse('get', () => cache.get(key))
      await refuse('has', () => cache.has(key))
      await refuse('mget', () => cache.mget(['user:0', key]))
      await refuse('getOrSet', () => cache.getOrSet(key, loader))
      await refuse('refresh', () => cache.refresh(key, loader))
      await refuse('set', () => cache.set(key, 1))
      await refuse('mset', () =>
        cache.mset([
          { key: 'fresh', value: 1 },
          { key, value: 2 },
        ]),
      )
      await refuse('delete', () => cache.delete(key))
      await refuse('mdelete', () => cache.mdelete(['user:1', key]))
      await refuse('invalidate keys', () => cache.invalidate({ keys: ['user:2', key] }))
      await refuse('dependsOn', () => cache.set('fresh', 1, { dependsOn: [key] }))
      await refuse('getOrSet dependsOn', () => cache.getOrSet('fresh', loader, { dependsOn: [key] }))
      await refuse('warm', () => cache.warm([{ key, loader }]))
      await refuse('addWarmer', () => cache.addWarmer(key, loader))
      await refuse('namespace', () => cache.namespace(key))
      await refuse('wrap', () => cache.wrap(key, loader))
      await refuse('write-behind', () => queue.write(key, { v: 1 }))
      // The layer guards its own space for direct callers too.
      await refuse('RedisLayer.delete', () => s.layer.delete(key))
      await refuse('RedisLayer.deleteMany', () => s.layer.deleteMany(['user:3', key]))
      await refuse('invalidateByPrefix', () => cache.invalidateByPrefix(key))
      await refuse('invalidate prefixes', () => cache.invalidate({ prefixes: [key] }))
      const pattern = (what: string, call: () => unknown) =>
        expectRefused(s, `${what} ${key}`, call, InvalidPatternError)
      await pattern('invalidateByPattern', () => cache.invalidateByPattern(key))
      await pattern('invalidateByPattern *', () => cache.invalidateByPattern(`${key}*`))
      await pattern('invalidate patterns', () => cache.invalidate({ patterns: [`${key}*`] }))
    }
    // A namespace cannot lead into the reserved space either: '~te' + 'users' would be the tag's epoch.
    await expectRefused(s, 'namespace ~te', () => cache.namespace('~te').delete('users'))
    await expectRefused(s, 'namespace ~t', () => cache.namespace('~t').get('users'))
    expect.soft(await client.xlen(queue.streamKey), 'entries queued for reserved keys').toBe(0)

    // The index is intact: another instance (whose memory holds nothing to go by) finds all 32 users
    // by prefix, and the dependent of user:0.
    const other = new CacheStack([new RedisLayer({ client, prefix, knownKeysShards: 4 })])
    expect(await other.invalidateByPrefix('user:')).toBe(33)
    expect(await client.exists(...USERS.map((key) => prefix + key), `${prefix}profile:0`)).toBe(0)
  })

  it("'~' elsewhere in a key is an ordinary character", async () => {
    const { cache, prefix } = await seeded()
    await cache.set('a~b', 1, { tags: ['t'] })
    await cache.namespace('n~s').set('fine~', 2)
    expect(await cache.get('a~b')).toBe(1)
    expect(await cache.get('n~s:fine~')).toBe(2)
    expect(await client.exists(`${prefix}n~s:fine~`)).toBe(1)
    expect(await cache.invalidateByPattern('*~*')).toBe(2)
  })
})

describe('invalidating everything removes every cache key and none of the layer own', () => {
  for (const keyIndex of [true, false]) {
    it(`'' prefix, '*' and '?*' patterns, keyIndex: ${keyIndex}`, { timeout: 60_000 }, async () => {
      for (const invalidate of [
        (cache: CacheStack) => cache.invalidateByPrefix(''),
        (cache: CacheStack) => cache.invalidateByPattern('*'),
        (cache: CacheStack) => cache.invalidateByPattern('?*'),
        (cache: CacheStack) => cache.invalidate({ prefixes: [''], patterns: ['*'] }),
      ]) {
        const s = await seeded({ keyIndex })
        const { cache, prefix, layer } = s
        const own = async () => (await client.keys(`${prefix}~*`)).sort()
        // What must outlive any invalidation: the layout, the key version, the shared generation, the
        // dependency mark (index sets and tag sets empty out and vanish with their members).
        const lasting = (await own()).filter(
          (key) => !/~\{[^}]*\}k[xtp]?$/.test(key) && !key.startsWith(`${prefix}~t:`),
        )
        expect(lasting).toContain(`${prefix}~v:catalog`)
        expect(lasting).toContain(`${prefix}~gen`)
        if (keyIndex) expect(lasting).toContain(layoutKeyOf(prefix))

        expect(await invalidate(cache)).toBeGreaterThanOrEqual(33)
        const left = (await client.keys(`${prefix}*`)).sort()
        expect(left.filter((key) => !key.startsWith(`${prefix}~`))).toEqual([])
        for (const key of lasting) expect(left, key).toContain(key)
        expect(await cache.keyVersion('catalog')).toBe(1)
        expect(await layer.sharedGeneration(0)).toBe(1)

        // The layer still works on its structures: tags, dependencies and prefixes find new entries.
        await cache.set('user:1', 'again', { tags: ['users'] })
        await cache.set('profile:1', 'p1', { dependsOn: ['user:1'] })
        expect(await cache.invalidateByTag('users')).toBe(2)
        expect(await cache.mget(['user:1', 'profile:1'])).toEqual([undefined, undefined])
        await cache.set('user:2', 'again')
        expect(await cache.invalidateByPrefix('user:')).toBe(1)
      }
    })
  }
})
