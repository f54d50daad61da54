import { CacheStack, InvalidOptionError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { LAYOUT_WARNING, LEGACY_WARNING, RedisLayer } from '../src'
import { type IndexShard, layoutKeyOf, legacyShardOf, NEVER, shardsOf } from '../src/index-layout'
import { RedisKeyIndex } from '../src/redis-key-index'
import { RedisTagStore } from '../src/redis-tag-store'
import { watchWarnings, writeLegacy } from './support/legacy-index'

const redis = useRedisAndCluster()

afterEach(() => {
  vi.restoreAllMocks()
})

async function entries(raw: Redis | Cluster, shard: IndexShard) {
  return {
    k: await raw.zrange(shard.keysKey, 0, -1),
    kx: await raw.zcard(shard.expiryKey),
    kt: await raw.hlen(shard.tagsKey),
  }
}

describe.each(['standalone', 'cluster'] as const)('the sharded key index on %s Redis', (target) => {
  const setup = (options: { knownKeysShards?: number; prefix?: string } = {}) => {
    const prefix = options.prefix ?? redis.prefix(target, 'shard')
    const layer = new RedisLayer({
      client: redis.client(target),
      prefix,
      knownKeysShards: options.knownKeysShards,
    })
    const index = new RedisKeyIndex(layer, true, { knownKeysShards: options.knownKeysShards })
    return { layer, index, raw: layer.client, cache: new CacheStack([new MemoryLayer(), layer]) }
  }
  const keys = (count: number, under = 'user:') => Array.from({ length: count }, (_, i) => `${under}${i}`)

  it('spreads keys over every shard, and a prefix or pattern invalidation finds them in each', async () => {
    const { cache, index, raw } = setup()
    await cache.mset([...keys(200), ...keys(20, 'other:')].map((key) => ({ key, value: key })))
    const shards = await index.shards()
    expect(shards).toHaveLength(16)
    for (const shard of shards) expect((await entries(raw, shard)).k.length).toBeGreaterThan(0)
    expect(await cache.invalidateByPattern('user:*0')).toBe(20)
    expect(await cache.invalidateByPrefix('user:')).toBe(180)
    for (const key of keys(200)) expect(await cache.get(key)).toBeUndefined()
    // Only the other keys are left, each in its own shard.
    const left = (await Promise.all(shards.map(async (shard) => (await entries(raw, shard)).k))).flat()
    expect(left.sort()).toEqual(
      keys(20, 'other:')
        .map((key) => index.layout.prefix + key)
        .sort(),
    )
  })

  it('deletes and tag invalidations clean the entries in every shard', async () => {
    const { cache, index, raw, layer } = setup()
    await cache.mset(keys(120).map((key, i) => ({ key, value: i, tags: [i % 2 ? 'odd' : 'even', 'all'] })))
    await cache.mdelete(keys(120).filter((_, i) => i % 3 === 0))
    expect(await cache.invalidateByTag('odd')).toBe(40)
    expect(await cache.invalidateByTags(['even', 'all'], 'all')).toBe(40)
    for (const shard of await index.shards())
      expect(await entries(raw, shard)).toEqual({ k: [], kx: 0, kt: 0 })
    const tags = new RedisTagStore(layer)
    for (const tag of ['odd', 'even', 'all']) expect(await raw.zcard(tags.tagSetKey(tag))).toBe(0)
  })

  it('costs the same round trips with 1 shard as with 256', async () => {
    const count = async (knownKeysShards: number) => {
      const { cache, layer } = setup({ knownKeysShards })
      await cache.mset(keys(150).map((key) => ({ key, value: 1, tags: ['t'] })))
      const pipelines = vi.spyOn(layer, 'execPipeline')
      const commands = vi.spyOn(layer, 'command')
      // 61 matches: one page of the range whatever the number of shards.
      expect(await cache.invalidateByPrefix('user:1')).toBe(61)
      expect(await cache.invalidateByTag('t')).toBe(89)
      const trips = pipelines.mock.calls.length + commands.mock.calls.length
      pipelines.mockRestore()
      commands.mockRestore()
      return trips
    }
    const one = await count(1)
    const many = await count(256)
    // On a Cluster a round trip is one pipeline per node, in parallel (up to 3 here).
    if (target === 'standalone') expect(many).toBe(one)
    else expect(many).toBeLessThanOrEqual(one * 3)
  })

  describe('layout agreement', () => {
    it('records the shard count on first use; an instance configured otherwise uses it and warns', async () => {
      const prefix = redis.prefix(target, 'layout')
      const four = setup({ prefix, knownKeysShards: 4 })
      await four.cache.mset(keys(50, 'a:').map((key) => ({ key, value: 1 })))
      expect(await four.raw.get(layoutKeyOf(four.layer.prefix))).toBe('4')
      const warnings = watchWarnings(LAYOUT_WARNING)
      const sixteen = setup({ prefix })
      await sixteen.cache.mset(keys(50, 'b:').map((key) => ({ key, value: 2 })))
      expect(warnings()).toHaveLength(1)
      expect(warnings()[0]).toContain('records 4')
      await sixteen.cache.invalidateByPrefix('none:')
      // The warning is given once per layer.
      expect(warnings()).toHaveLength(1)
      expect(await sixteen.index.shards()).toHaveLength(4)
      // Both see every key, whoever wrote it.
      expect(await sixteen.cache.invalidateByPrefix('a:')).toBe(50)
      expect(await four.cache.invalidateByPrefix('b:')).toBe(50)
      // Nothing was ever written to a shard the recorded layout does not have.
      for (const shard of shardsOf(four.layer.prefix, 16).slice(4)) {
        expect(await four.raw.exists(shard.keysKey)).toBe(0)
      }
    })

    it('a recorded layout survives clear() and keeps every instance on it', async () => {
      const prefix = redis.prefix(target, 'layout')
      const four = setup({ prefix, knownKeysShards: 4 })
      await four.cache.set('k', 1)
      await four.layer.clear()
      const other = setup({ prefix, knownKeysShards: 8 })
      await other.cache.set('k', 2)
      expect(await other.index.shards()).toHaveLength(4)
    })
  })

  describe('legacy single-set index', () => {
    it('is read by invalidations, cleaned and collected; new writes go to the shards; one warning', async () => {
      const { layer, cache, index, raw } = setup()
      await writeLegacy(layer.client, layer.prefix, [
        ...keys(30, 'old:').map((key) => ({ key })),
        { key: 'old:tagged', tags: ['t1', 't2'] },
        { key: 'old:expiring', ttl: 60_000 },
      ])
      const legacy = legacyShardOf(layer.prefix)
      const warnings = watchWarnings(LEGACY_WARNING)
      await cache.mset(keys(10, 'old:new:').map((key) => ({ key, value: 'new' })))
      expect(warnings()).toHaveLength(1)
      expect(warnings()[0]).toContain('layercache migrate-tag-index')
      // New entries are sharded: the legacy set holds only what the old version wrote.
      expect((await entries(raw, legacy)).k).toHaveLength(32)
      // A delete forgets a legacy entry and the memberships its recorded tags name.
      await cache.delete('old:tagged')
      const tags = new RedisTagStore(layer)
      expect(await raw.zcard(tags.tagSetKey('t1'))).toBe(0)
      expect(await raw.zcard(tags.tagSetKey('t2'))).toBe(0)
      expect(await raw.hlen(legacy.tagsKey)).toBe(0)
      // A prefix invalidation finds legacy and sharded keys alike; the layer warned once in all.
      expect(await cache.invalidateByPrefix('old:1')).toBe(11)
      expect(warnings()).toHaveLength(1)
      // Collection covers the legacy set (a second handle on the index: it warns for itself).
      expect(await index.collect(Date.now() + 10 * 60_000)).toBe(1)
      expect(await cache.invalidateByPrefix('old:')).toBe(29)
      expect(await raw.exists(legacy.keysKey)).toBe(0)
    })

    it('is found by an invalidation even when it appeared after the layer looked for it', async () => {
      const { layer, cache } = setup()
      await cache.set('first', 1)
      const warnings = watchWarnings(LEGACY_WARNING)
      await writeLegacy(
        layer.client,
        layer.prefix,
        keys(5, 'late:').map((key) => ({ key })),
      )
      expect(await cache.invalidateByPrefix('late:')).toBe(5)
      expect(warnings()).toHaveLength(1)
    })

    it('an entry in both the legacy set and a shard (a migration crashed between) is removed once', async () => {
      const { layer, cache, index, raw } = setup()
      await writeLegacy(layer.client, layer.prefix, [{ key: 'both', tags: ['t'] }])
      const shard = await index.shardOf(`${layer.prefix}both`)
      await raw.zadd(shard.keysKey, 0, `${layer.prefix}both`)
      await raw.zadd(shard.expiryKey, NEVER, `${layer.prefix}both`)
      await raw.hset(shard.tagsKey, `${layer.prefix}both`, 't')
      expect(await cache.invalidateByPrefix('')).toBe(1)
      expect(await entries(raw, shard)).toEqual({ k: [], kx: 0, kt: 0 })
      expect(await raw.exists(legacyShardOf(layer.prefix).keysKey)).toBe(0)
    })
  })

  describe('RedisLayer.useTagIndex', () => {
    const tagIndex = (options: Record<string, unknown> = {}) => ({
      client: redis.client(target),
      prefix: redis.prefix(target, 'tagidx'),
      ...options,
    })

    it('keeps the shards under the index prefix, shared by layers of other prefixes', async () => {
      const shared = tagIndex({ knownKeysShards: 8, scanCount: 3 })
      const client = redis.client(target)
      const one = new RedisLayer({ client, prefix: redis.prefix(target, 'one') })
      const two = new RedisLayer({ client, prefix: redis.prefix(target, 'two') })
      const a = new CacheStack([one], { tagIndex: shared })
      const b = new CacheStack([two], { tagIndex: shared })
      await a.mset(keys(40).map((key) => ({ key, value: 'a' })))
      await b.mset(keys(40).map((key) => ({ key, value: 'b' })))
      const indexPrefix = `${shared.prefix}:`
      const shards = shardsOf(indexPrefix, 8)
      const all = (await Promise.all(shards.map(async (shard) => (await entries(client, shard)).k))).flat()
      expect(all).toHaveLength(80)
      expect(await client.get(layoutKeyOf(indexPrefix))).toBe('8')
      // Nothing of the index under the layers' own prefixes.
      for (const layer of [one, two]) {
        for (const shard of shardsOf(layer.prefix, 16)) expect(await client.exists(shard.keysKey)).toBe(0)
      }
      // Each invalidation (in pages of 3 per shard) and clear() take only their own layer's keys.
      expect(await a.invalidateByPrefix('user:1')).toBe(11)
      await one.clear()
      expect(await a.get('user:2')).toBeUndefined()
      const left = (await Promise.all(shards.map(async (shard) => (await entries(client, shard)).k))).flat()
      expect(left.sort()).toEqual(
        keys(40)
          .map((key) => two.prefix + key)
          .sort(),
      )
      expect(await b.invalidateByPrefix('')).toBe(40)
    })

    it("clear() keeps other layers' entries even when the index prefix is the clearing layer's own", async () => {
      const client = redis.client(target)
      const own = redis.prefix(target, 'own')
      const shared = tagIndex({ prefix: own, knownKeysShards: 4 })
      const first = new RedisLayer({ client, prefix: own })
      const second = new RedisLayer({ client, prefix: redis.prefix(target, 'second') })
      const a = new CacheStack([first], { tagIndex: shared })
      const b = new CacheStack([second], { tagIndex: shared })
      await a.mset(keys(20).map((key) => ({ key, value: 1 })))
      await b.mset(keys(20).map((key) => ({ key, value: 2 })))
      await first.clear()
      const shards = shardsOf(first.prefix, 4)
      const left = (await Promise.all(shards.map(async (shard) => (await entries(client, shard)).k))).flat()
      expect(left.sort()).toEqual(
        keys(20)
          .map((key) => second.prefix + key)
          .sort(),
      )
      expect(await b.invalidateByPrefix('')).toBe(20)
    })

    it('refuses an index it cannot use with InvalidOptionError, before anything is written', async () => {
      const client = redis.client(target)
      const layer = () => new RedisLayer({ client, prefix: redis.prefix(target, 'bad') })
      const bad: unknown[] = [
        null,
        'myapp:tags',
        {},
        tagIndex({ prefix: '' }),
        tagIndex({ prefix: 7 }),
        tagIndex({ client: {} }),
        tagIndex({ knownKeysShards: 0 }),
        tagIndex({ knownKeysShards: 1025 }),
        tagIndex({ knownKeysShards: 2.5 }),
        tagIndex({ scanCount: 0 }),
        tagIndex({ unknown: 1 }),
      ]
      for (const candidate of bad) {
        expect(() => new CacheStack([layer()], { tagIndex: candidate as object }), String(candidate)).toThrow(
          InvalidOptionError,
        )
      }
      // Another client object, even to the same Redis.
      const other = target === 'standalone' ? (client as Redis).duplicate() : client
      if (other !== client) {
        expect(() => new CacheStack([layer()], { tagIndex: tagIndex({ client: other }) })).toThrow(
          InvalidOptionError,
        )
        other.disconnect()
      }
      // A layer without a key index, or with another shard count of its own.
      expect(
        () =>
          new CacheStack([new RedisLayer({ client, prefix: 'x', keyIndex: false })], {
            tagIndex: tagIndex(),
          }),
      ).toThrow(InvalidOptionError)
      expect(
        () =>
          new CacheStack([new RedisLayer({ client, prefix: 'x', knownKeysShards: 4 })], {
            tagIndex: tagIndex({ knownKeysShards: 8 }),
          }),
      ).toThrow(InvalidOptionError)
      // No layer that can use one.
      expect(() => new CacheStack([new MemoryLayer()], { tagIndex: tagIndex() })).toThrow(InvalidOptionError)
      // After the layer's first operation.
      const used = layer()
      await new CacheStack([used]).set('k', 1)
      expect(() => used.useTagIndex(tagIndex())).toThrow(InvalidOptionError)
    })

    it('RedisLayer refuses bad knownKeysShards', () => {
      const client = redis.client(target)
      for (const knownKeysShards of [0, -1, 1.5, 1025, '16', Number.NaN]) {
        expect(
          () => new RedisLayer({ client, knownKeysShards: knownKeysShards as number }),
          String(knownKeysShards),
        ).toThrow(InvalidOptionError)
      }
      expect(() => new RedisLayer({ client, keyIndex: false, knownKeysShards: 4 })).toThrow(
        InvalidOptionError,
      )
      expect(new RedisLayer({ client, knownKeysShards: 1024 })).toBeInstanceOf(RedisLayer)
    })
  })
})
