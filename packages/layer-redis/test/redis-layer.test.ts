import {
  CacheStack,
  InvalidOptionError,
  LayerCacheError,
  OversizedValueError,
  SerializationError,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer, type Serializer } from '../src'

let redis: TestRedis
let client: Redis
let raw: Redis
let n = 0
/** A fresh prefix per test so tests never see each other's keys (REDIS_URL may be shared). */
const prefix = () => `${redis.keyPrefix}${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  raw = redis.createClient()
})
afterAll(() => redis.close())

function stack(layer: RedisLayer, withMemory = true) {
  return new CacheStack(withMemory ? [new MemoryLayer({ ttl: 60_000 }), layer] : [layer])
}

describe('RedisLayer on a standalone Redis', () => {
  it('stores under the prefix, normalised with a trailing colon', async () => {
    const base = prefix().slice(0, -1)
    const layer = new RedisLayer({ client, prefix: base })
    expect(layer.prefix).toBe(`${base}:`)
    await stack(layer).set('user:1', { name: 'Ada' })
    expect(await raw.exists(`${base}:user:1`)).toBe(1)
    expect(new RedisLayer({ client, prefix: `${base}:` }).prefix).toBe(`${base}:`)
  })

  it('round-trips values through a second stack that only has Redis', async () => {
    const p = prefix()
    await stack(new RedisLayer({ client, prefix: p })).set('k', { a: [1, 2, { b: 'x' }], n: null })
    const reader = stack(new RedisLayer({ client, prefix: p }), false)
    expect(await reader.get('k')).toEqual({ a: [1, 2, { b: 'x' }], n: null })
  })

  it('applies the TTL as PX, capped by the layer ttl', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p, ttl: 5_000 }))
    await cache.set('short', 1, { ttl: 2_000 })
    await cache.set('long', 1, { ttl: 60_000 })
    await cache.set('default', 1)
    const short = await raw.pttl(`${p}short`)
    expect(short).toBeGreaterThan(0)
    expect(short).toBeLessThanOrEqual(2_000)
    expect(await raw.pttl(`${p}long`)).toBeLessThanOrEqual(5_000)
    expect(await raw.pttl(`${p}default`)).toBeLessThanOrEqual(5_000)
    await cache.set('forever', 1)
    const noTtl = new RedisLayer({ client, prefix: p })
    await stack(noTtl).set('forever', 1)
    expect(await raw.pttl(`${p}forever`)).toBe(-1)
  })

  it('back-fills L1 with the remaining TTL of the Redis entry', async () => {
    const p = prefix()
    await stack(new RedisLayer({ client, prefix: p }), false).set('k', 'v', { ttl: 400 })
    const memory = new MemoryLayer({ ttl: 60_000 })
    const cache = new CacheStack([memory, new RedisLayer({ client, prefix: p })])
    expect(await cache.get('k')).toBe('v')
    const entry = memory.get(`k`)
    expect(entry?.value).toBe('v')
    expect(entry!.expiresAt - Date.now()).toBeLessThanOrEqual(400)
    expect(cache.getStats().backfills).toBe(1)
    expect(cache.getStats().layers.map((l) => l.hits)).toEqual([0, 1])
  })

  it('reads and writes many keys in one round trip each (MGET, pipelined SET)', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p }))
    const before = await commandCalls(['mget', 'set'])
    await cache.mset(Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: i })))
    const reader = stack(new RedisLayer({ client, prefix: p }))
    const values = await reader.mget(Array.from({ length: 52 }, (_, i) => `k${i}`))
    expect(values).toEqual([...Array.from({ length: 50 }, (_, i) => i), undefined, undefined])
    const after = await commandCalls(['mget', 'set'])
    expect(after.mget! - before.mget!).toBe(1)
    // 50 values, and the key index's layout record on the layer's first write (SET NX, once).
    expect(after.set! - before.set!).toBe(51)
    await reader.mdelete(['k0', 'k1'])
    expect(await raw.exists(`${p}k0`, `${p}k1`, `${p}k2`)).toBe(1)
  })

  it('answers has() and delete() against Redis', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p }), false)
    await cache.set('k', 1)
    expect(await cache.has('k')).toBe(true)
    await cache.delete('k')
    expect(await cache.has('k')).toBe(false)
    expect(await raw.exists(`${p}k`)).toBe(0)
  })

  it('serialises with msgpack, keeping Dates and Maps', async () => {
    const p = prefix()
    const value = { at: new Date('2026-01-02T03:04:05Z'), m: new Map([['a', 1]]), bin: Buffer.from([1, 2]) }
    await stack(new RedisLayer({ client, prefix: p, serializer: 'msgpack' }), false).set('k', value)
    const stored = await raw.getBuffer(`${p}k`)
    expect(String.fromCharCode(stored![0]!)).toBe('M')
    const read = await stack(new RedisLayer({ client, prefix: p, serializer: 'msgpack' }), false).get<
      typeof value
    >('k')
    expect(read?.at).toEqual(value.at)
    expect(read?.m.get('a')).toBe(1)
  })

  it('reads values written by another serializer (rolling config change)', async () => {
    const p = prefix()
    await stack(new RedisLayer({ client, prefix: p, serializer: 'msgpack' }), false).set('k', { x: 1 })
    expect(await stack(new RedisLayer({ client, prefix: p }), false).get('k')).toEqual({ x: 1 })
  })

  it('accepts a custom serializer and rejects malformed ones', async () => {
    const p = prefix()
    const upper: Serializer = {
      id: 'B',
      serialize: (v) => Buffer.from(JSON.stringify(v)).toString('base64'),
      deserialize: (d) => JSON.parse(Buffer.from(d.toString(), 'base64').toString()),
    }
    await stack(new RedisLayer({ client, prefix: p, serializer: upper }), false).set('k', 'abc')
    expect((await raw.get(`${p}k`))?.startsWith('B')).toBe(true)
    expect(await stack(new RedisLayer({ client, prefix: p, serializer: upper }), false).get('k')).toBe('abc')
    expect(() => new RedisLayer({ client, serializer: { ...upper, id: 'Z' } })).toThrow(InvalidOptionError)
    expect(() => new RedisLayer({ client, serializer: { ...upper, id: 'too long' } })).toThrow(
      InvalidOptionError,
    )
  })

  it('compresses values above the threshold and not below it', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p, compression: { threshold: 256 } }), false)
    const big = { text: 'layercache '.repeat(500) }
    await cache.set('big', big)
    await cache.set('small', { text: 'tiny' })
    const storedBig = await raw.getBuffer(`${p}big`)
    expect(String.fromCharCode(storedBig![0]!)).toBe('Z')
    expect(storedBig!.length).toBeLessThan(JSON.stringify(big).length / 4)
    expect(String.fromCharCode((await raw.getBuffer(`${p}small`))![0]!)).toBe('[')
    const reader = stack(new RedisLayer({ client, prefix: p }), false)
    expect(await reader.get('big')).toEqual(big)
    expect(await reader.get('small')).toEqual({ text: 'tiny' })
  })

  it('compresses and inflates large values off the event loop', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p, compression: true }), false)
    const huge = Array.from({ length: 20_000 }, (_, i) => ({ i, s: `row-${i}` }))
    await cache.set('huge', huge)
    expect(await stack(new RedisLayer({ client, prefix: p, compression: true }), false).get('huge')).toEqual(
      huge,
    )
  })

  it('refuses oversized and unserialisable values and changes nothing', async () => {
    const p = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p, maxValueBytes: 100 }))
    await cache.set('k', 'old')
    await expect(cache.set('k', 'x'.repeat(200))).rejects.toBeInstanceOf(OversizedValueError)
    await expect(cache.set('k', { n: 10n })).rejects.toBeInstanceOf(SerializationError)
    expect(await cache.get('k')).toBe('old')
    expect(await stack(new RedisLayer({ client, prefix: p }), false).get('k')).toBe('old')
  })

  it('treats an envelope of a newer format as a miss and garbage as a corrupt entry (see bad-entries)', async () => {
    const p = prefix()
    await raw.set(`${p}future`, '[99,0,null,"from the future"]')
    await raw.set(`${p}garbage`, 'not a layercache value')
    const cache = stack(new RedisLayer({ client, prefix: p }), false)
    expect(await cache.get('future')).toBeUndefined()
    expect(await cache.get('garbage')).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ corruptEntries: 1, misses: 2, errors: 0 })
    await expect(new RedisLayer({ client, prefix: p }).get('garbage')).rejects.toBeInstanceOf(LayerCacheError)
  })

  it('clears only its own prefix, with glob characters in the prefix taken literally', async () => {
    const base = prefix()
    const p = `${base}we[ir]d*`
    const other = prefix()
    const cache = stack(new RedisLayer({ client, prefix: p }))
    await cache.mset(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: i })))
    // An unescaped MATCH of "we[ir]d*:*" would match this key too.
    const lookalike = `${base}weid-other:x`
    await raw.set(lookalike, '1')
    await stack(new RedisLayer({ client, prefix: other })).set('k', 1)
    await new RedisLayer({ client, prefix: p }).clear()
    expect(await raw.exists(`${p}:k0`, `${p}:k1199`)).toBe(0)
    expect(await raw.exists(lookalike, `${other}k`)).toBe(2)
    await expect(new RedisLayer({ client }).clear()).rejects.toBeInstanceOf(InvalidOptionError)
  })

  it('rejects bad options with typed errors', () => {
    expect(() => new RedisLayer({ client: {} as Redis })).toThrow(InvalidOptionError)
    expect(() => new RedisLayer({ client, ttl: -1 })).toThrow(LayerCacheError)
    expect(() => new RedisLayer({ client, commandTimeout: 0 })).toThrow(InvalidOptionError)
    expect(() => new RedisLayer({ client, compression: { level: 12 } })).toThrow(InvalidOptionError)
    expect(() => new RedisLayer({ client, prefix: 'a\nb' })).toThrow(LayerCacheError)
    expect(() => new RedisLayer({ client, ...{ ttlMs: 5 } })).toThrow(InvalidOptionError)
  })
})

async function commandCalls(commands: string[]): Promise<Record<string, number>> {
  const info = await raw.info('commandstats')
  const out: Record<string, number> = {}
  for (const command of commands) {
    const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)
    out[command] = match ? Number(match[1]) : 0
  }
  return out
}
