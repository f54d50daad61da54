import { CacheStack, InvalidOptionError, LayerCacheError } from '@layercache/core'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { LAYOUT_WARNING, LEGACY_WARNING, migrateTagIndex, RedisLayer } from '../src'
import { type IndexShard, layoutKeyOf, legacyShardOf, shardIndexOf, shardsOf } from '../src/index-layout'
import { REMOVE_MOVED_SCRIPT } from '../src/index-scripts'
import { RedisKeyIndex } from '../src/redis-key-index'
import { RedisTagStore } from '../src/redis-tag-store'
import { type LegacyItem, watchWarnings, writeLegacy } from './support/legacy-index'

const redis = useRedisAndCluster()

afterEach(() => {
  vi.restoreAllMocks()
})

type Client = Redis | Cluster

/** Every entry of the shards: key → its shard's lex member, expiry score and tags. */
async function dump(client: Client, shards: readonly IndexShard[]) {
  const found = new Map<string, { shard: number; expiry: string | null; tags: string | null }>()
  for (const [i, shard] of shards.entries()) {
    for (const full of await client.zrange(shard.keysKey, 0, -1)) {
      expect(found.has(full), `${full} in two shards`).toBe(false)
      found.set(full, {
        shard: i,
        expiry: await client.zscore(shard.expiryKey, full),
        tags: await client.hget(shard.tagsKey, full),
      })
    }
  }
  return found
}

async function legacyState(client: Client, prefix: string) {
  const legacy = legacyShardOf(prefix)
  return {
    k: await client.zcard(legacy.keysKey),
    kx: await client.zcard(legacy.expiryKey),
    kt: await client.hlen(legacy.tagsKey),
  }
}

const items = (count: number, under = 'k:'): LegacyItem[] =>
  Array.from({ length: count }, (_, i) => ({
    key: `${under}${i}`,
    tags: i % 3 === 0 ? [`t${i % 2}`, 'every-third'] : undefined,
    ttl: i % 4 === 0 ? 600_000 : undefined,
  }))

describe.each(['standalone', 'cluster'] as const)('migrateTagIndex on %s Redis', (target) => {
  const setup = () => {
    const client = redis.client(target)
    const prefix = `${redis.prefix(target, 'mig')}:`
    const layer = (knownKeysShards?: number) => new RedisLayer({ client, prefix, knownKeysShards })
    return { client, prefix, layer }
  }

  it('a dry run reports what would move to each shard and changes nothing', async () => {
    const { client, prefix } = setup()
    await writeLegacy(client, prefix, items(120))
    const before = await legacyState(client, prefix)
    const progress: number[] = []
    const report = await migrateTagIndex({
      client,
      prefix,
      dryRun: true,
      batchSize: 50,
      onProgress: ({ moved }) => {
        progress.push(moved)
      },
    })
    const expected = Array.from({ length: 16 }, () => 0)
    for (let i = 0; i < 120; i++) expected[shardIndexOf(`${prefix}k:${i}`, 16)]!++
    expect(report).toMatchObject({
      dryRun: true,
      prefix,
      layoutBefore: [],
      layoutAfter: [16],
      knownKeysShards: 16,
      sources: [{ key: legacyShardOf(prefix).keysKey, kind: 'legacy', entries: 120 }],
      perShard: expected,
      moved: 120,
      left: 0,
    })
    expect(progress).toEqual([50, 100, 120])
    expect(await legacyState(client, prefix)).toEqual(before)
    expect(await client.exists(layoutKeyOf(prefix))).toBe(0)
    for (const shard of shardsOf(prefix, 16)) expect(await client.exists(shard.keysKey)).toBe(0)
  })

  it('moves every entry with its expiry and tags into its shard; a second run does nothing', async () => {
    const { client, prefix, layer } = setup()
    await writeLegacy(client, prefix, items(120))
    const legacy = legacyShardOf(prefix)
    const expiries = new Map<string, string | null>()
    for (let i = 0; i < 120; i++) {
      expiries.set(`${prefix}k:${i}`, await client.zscore(legacy.expiryKey, `${prefix}k:${i}`))
    }
    const report = await migrateTagIndex({ client, prefix, batchSize: 32 })
    expect(report).toMatchObject({ dryRun: false, moved: 120, left: 0, layoutAfter: [16] })
    expect(report.perShard.reduce((a, b) => a + b, 0)).toBe(120)
    expect(await client.get(layoutKeyOf(prefix))).toBe('16')
    expect(await client.exists(legacy.keysKey)).toBe(0)
    expect(await client.exists(legacy.expiryKey)).toBe(0)
    expect(await client.exists(legacy.tagsKey)).toBe(0)
    const found = await dump(client, shardsOf(prefix, 16))
    expect(found.size).toBe(120)
    for (const item of items(120)) {
      const full = `${prefix}${item.key}`
      expect(found.get(full)).toEqual({
        shard: shardIndexOf(full, 16),
        expiry: expiries.get(full),
        tags: item.tags === undefined ? null : item.tags.join('\u0000'),
      })
    }
    const again = await migrateTagIndex({ client, prefix })
    expect(again).toMatchObject({ moved: 0, left: 0, sources: [], layoutBefore: [16], layoutAfter: [16] })

    // A layer finds everything where it now is, without a legacy warning.
    const warnings = watchWarnings(LEGACY_WARNING)
    const cache = new CacheStack([layer()])
    await cache.delete('k:3') // its recorded tags came along: its memberships go too
    const tags = new RedisTagStore(layer())
    expect(await client.zrange(tags.tagSetKey('t1'), 0, -1)).not.toContain(`${prefix}k:3`)
    expect(await cache.invalidateByTag('every-third')).toBe(39)
    expect(await cache.invalidateByPrefix('k:')).toBe(80)
    expect(warnings()).toEqual([])
  })

  it('an interrupted run leaves every key findable; running it again completes it', async () => {
    const { client, prefix, layer } = setup()
    await writeLegacy(client, prefix, items(300))
    let steps = 0
    const stop = new Error('stopped after two steps')
    await expect(
      migrateTagIndex({
        client,
        prefix,
        batchSize: 40,
        onProgress: () => {
          if (++steps === 2) throw stop
        },
      }),
    ).rejects.toBe(stop)
    expect((await legacyState(client, prefix)).k).toBe(220)
    expect((await dump(client, shardsOf(prefix, 16))).size).toBe(80)
    // As if a crash came between adding entries to their shards and removing them from the legacy set.
    const legacy = legacyShardOf(prefix)
    const copied = (await client.zrange(legacy.keysKey, 0, 9)).map((full) => full.slice(prefix.length))
    expect(copied).toHaveLength(10)
    for (const key of copied) {
      const full = prefix + key
      const shard = shardsOf(prefix, 16)[shardIndexOf(full, 16)]!
      await client.zadd(shard.keysKey, 0, full)
      await client.zadd(shard.expiryKey, (await client.zscore(legacy.expiryKey, full))!, full)
    }
    // Mid-way, a layer finds keys on both sides (and those in both once).
    const cache = new CacheStack([layer()])
    expect(await cache.invalidateByPattern('k:2?')).toBe(10)

    const left = (await legacyState(client, prefix)).k
    const resumed = await migrateTagIndex({ client, prefix, batchSize: 40 })
    expect(resumed).toMatchObject({ left: 0, layoutBefore: [16], moved: left })
    expect(await legacyState(client, prefix)).toEqual({ k: 0, kx: 0, kt: 0 })
    expect((await dump(client, shardsOf(prefix, 16))).size).toBe(290)
    expect(await cache.invalidateByPrefix('k:')).toBe(290)
  })

  it('an entry a writer re-indexes while it is being copied stays for the next run', async () => {
    const { client, prefix } = setup()
    await writeLegacy(client, prefix, items(3))
    const legacy = legacyShardOf(prefix)
    // k:0 expires in 10 minutes; the writer moves that to an hour.
    const full = `${prefix}k:0`
    const later = String(Date.now() + 3_600_000)
    let raced = false
    // A writer of the earlier version re-indexes k:0 (a new expiry) between the copy and the removal.
    const racing = new Proxy(client, {
      get(target, property) {
        if (property === 'eval') {
          return async (...args: Parameters<Client['eval']>) => {
            if (args[0] === REMOVE_MOVED_SCRIPT && !raced) {
              raced = true
              await target.zadd(legacy.expiryKey, later, full)
            }
            return target.eval(...args)
          }
        }
        const value = Reflect.get(target, property)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const first = await migrateTagIndex({ client: racing, prefix })
    expect(raced).toBe(true)
    expect(first).toMatchObject({ moved: 2, left: 1 })
    expect(await client.zscore(legacy.expiryKey, full)).toBe(later)
    const second = await migrateTagIndex({ client, prefix })
    expect(second).toMatchObject({ moved: 1, left: 0 })
    expect((await dump(client, shardsOf(prefix, 16))).get(full)?.expiry).toBe(later)
    expect(await legacyState(client, prefix)).toEqual({ k: 0, kx: 0, kt: 0 })
  })

  it('re-shards 16 → 4: entries move, the record changes, running and new layers follow it', async () => {
    const { client, prefix, layer } = setup()
    const running = layer()
    const cache = new CacheStack([running])
    const keys = Array.from({ length: 200 }, (_, i) => `r:${i}`)
    await cache.mset(
      keys.map((key, i) => ({ key, value: i, tags: i % 2 ? ['odd'] : undefined, ttl: 600_000 })),
    )
    const expiries = await dump(client, shardsOf(prefix, 16))
    const staying = keys.filter((key) => shardIndexOf(prefix + key, 16) < 4).length

    const dry = await migrateTagIndex({ client, prefix, knownKeysShards: 4, dryRun: true })
    expect(dry).toMatchObject({ layoutBefore: [16], layoutAfter: [4], moved: 200 - staying })
    expect(await client.get(layoutKeyOf(prefix))).toBe('16')

    const report = await migrateTagIndex({ client, prefix, knownKeysShards: 4, settleMs: 0, batchSize: 7 })
    expect(report).toMatchObject({ layoutBefore: [16], layoutAfter: [4], moved: 200 - staying, left: 0 })
    expect(await client.get(layoutKeyOf(prefix))).toBe('4')
    for (const shard of shardsOf(prefix, 16).slice(4)) {
      for (const key of [shard.keysKey, shard.expiryKey, shard.tagsKey])
        expect(await client.exists(key)).toBe(0)
    }
    const found = await dump(client, shardsOf(prefix, 4))
    expect(found.size).toBe(200)
    for (const key of keys) {
      const full = prefix + key
      expect(found.get(full)).toEqual({
        shard: shardIndexOf(full, 4),
        expiry: expiries.get(full)!.expiry,
        tags: expiries.get(full)!.tags,
      })
    }

    // A running layer picks the new record up on its next look; a new one warns and uses it.
    const warnings = watchWarnings(LAYOUT_WARNING)
    const runningIndex = new RedisKeyIndex(running)
    await runningIndex.layout.refresh()
    expect(await runningIndex.shards()).toHaveLength(4)
    const fresh = new CacheStack([layer()])
    expect(await fresh.invalidateByTag('odd')).toBe(100)
    expect(warnings().length).toBeGreaterThanOrEqual(1)
    expect(await cache.invalidateByPrefix('r:')).toBe(100)
    expect((await dump(client, shardsOf(prefix, 4))).size).toBe(0)
  })

  it('a run after a re-shard moves in what an instance that missed it wrote to a shard now unused', async () => {
    const { client, prefix, layer } = setup()
    const cache = new CacheStack([layer(4)])
    await cache.set('fresh', 1)
    // Written by an instance still on 16 shards after the record moved to 4.
    const full = `${prefix}late`
    const stale = shardsOf(prefix, 16)[9]!
    await client.set(full, 'v')
    await client.zadd(stale.keysKey, 0, full)
    await client.zadd(stale.expiryKey, 8.64e15, full)
    const report = await migrateTagIndex({ client, prefix })
    expect(report).toMatchObject({ layoutBefore: [4], layoutAfter: [4], moved: 1 })
    expect(report.sources).toEqual([{ key: stale.keysKey, kind: 'shard', entries: 1 }])
    expect(await client.exists(stale.keysKey)).toBe(0)
    expect(await cache.invalidateByPrefix('')).toBe(2)
  })

  it('while a re-shard is recorded, layers write the new layout and read both', async () => {
    const { client, prefix, layer } = setup()
    const old = new CacheStack([layer()])
    await old.mset(Array.from({ length: 60 }, (_, i) => ({ key: `old:${i}`, value: i })))
    await client.set(layoutKeyOf(prefix), '4,16')
    const next = new CacheStack([layer(4)])
    await next.mset(Array.from({ length: 60 }, (_, i) => ({ key: `new:${i}`, value: i })))
    for (const shard of shardsOf(prefix, 16).slice(4)) {
      for (const full of await client.zrange(shard.keysKey, 0, -1)) expect(full).toMatch(/old:/)
    }
    // Deletes clean either layout, invalidations find both.
    await next.mdelete(['old:1', 'new:1'])
    expect((await dump(client, shardsOf(prefix, 16))).has(`${prefix}old:1`)).toBe(false)
    expect(await next.invalidateByPrefix('old:1')).toBe(10)
    const report = await migrateTagIndex({ client, prefix, settleMs: 0 })
    expect(report).toMatchObject({ layoutBefore: [4, 16], layoutAfter: [4], left: 0 })
    expect(await client.get(layoutKeyOf(prefix))).toBe('4')
    const reader = new CacheStack([layer(4)])
    expect(await reader.invalidateByPrefix('')).toBe(108)
  })

  it('a RedisTagIndex adopted later reads the layer prefix index until it is moved in', async () => {
    const { client, prefix, layer } = setup()
    const before = new CacheStack([layer(8)])
    await before.mset(Array.from({ length: 50 }, (_, i) => ({ key: `a:${i}`, value: i, tags: ['t'] })))
    await writeLegacy(client, prefix, items(10, 'old:'))
    const indexPrefix = `${redis.prefix(target, 'tags')}:`
    const tagIndex = { client, prefix: indexPrefix, knownKeysShards: 4 }
    const warnings = watchWarnings(LEGACY_WARNING)
    const after = new CacheStack([layer()], { tagIndex })
    await after.set('b:1', 'new', { tags: ['t'] })
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0]).toContain(`--legacy-prefix "${prefix}"`)
    await after.delete('a:0')
    expect((await dump(client, shardsOf(prefix, 8))).has(`${prefix}a:0`)).toBe(false)
    expect(await after.invalidateByPrefix('a:1')).toBe(11)

    const report = await migrateTagIndex({ client, prefix: indexPrefix, legacyPrefix: prefix, batchSize: 9 })
    expect(report).toMatchObject({ moved: 38 + 10, left: 0, layoutAfter: [4] })
    expect(report.sources.map((source) => source.kind).sort()).toContain('layer-shard')
    expect(await client.exists(layoutKeyOf(prefix))).toBe(0)
    expect((await dump(client, shardsOf(prefix, 8))).size).toBe(0)
    expect((await dump(client, shardsOf(indexPrefix, 4))).size).toBe(38 + 10 + 1)
    // A layer started now reads only the index's shards, and finds everything there.
    const fresh = new CacheStack([layer()], { tagIndex })
    expect(await fresh.invalidateByTag('t')).toBe(38 + 1)
    expect(await fresh.invalidateByPrefix('')).toBe(10)
  })

  it('refuses bad options and a conflicting re-shard in progress, changing nothing', async () => {
    const { client, prefix } = setup()
    const bad: Record<string, unknown>[] = [
      { client: {}, prefix },
      { client, prefix: 5 },
      { client, prefix: 'bad\u0001' },
      { client, prefix, knownKeysShards: 0 },
      { client, prefix, knownKeysShards: 1025 },
      { client, prefix, batchSize: 0 },
      { client, prefix, settleMs: -1 },
      { client, prefix, dryRun: 'yes' },
      { client, prefix, onProgress: 1 },
      { client, prefix, other: true },
    ]
    for (const options of bad) {
      await expect(
        migrateTagIndex(options as unknown as Parameters<typeof migrateTagIndex>[0]),
        JSON.stringify(Object.keys(options)),
      ).rejects.toBeInstanceOf(LayerCacheError)
    }
    await client.set(layoutKeyOf(prefix), '16,4')
    await expect(migrateTagIndex({ client, prefix, knownKeysShards: 8 })).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(await client.get(layoutKeyOf(prefix))).toBe('16,4')
    await client.set(layoutKeyOf(prefix), 'nonsense')
    await expect(migrateTagIndex({ client, prefix })).rejects.toBeInstanceOf(LayerCacheError)
  })
})
