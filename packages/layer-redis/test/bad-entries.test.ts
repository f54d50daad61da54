/**
 * Bad data in Redis is contained (DESIGN invariant 11): a corrupt, foreign, wrong-type or oversized entry
 * is a counted miss with a `corruptEntry` event; it never moves the circuit breaker and never costs
 * unbounded work. Every bad entry here is written straight into Redis with a raw client.
 */
import { deflateRawSync } from 'node:zlib'
import { type CacheEventMap, CacheStack, CorruptEntryError, InvalidOptionError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'

let redis: TestRedis
let client: Redis
let raw: Redis
let n = 0
const prefix = () => `${redis.keyPrefix}bad${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  raw = redis.createClient()
})
afterAll(() => redis.close())

/** A stored value that says "compressed" but does not inflate. */
const NOT_DEFLATE = Buffer.concat([Buffer.from('Z'), Buffer.from([0xff, 0xfe, 0xfd, 0x00, 0x13, 0x37])])

/** A compressed JSON entry whose value is `chars` characters of 'x': small in Redis, large once inflated. */
function inflatingTo(chars: number): Buffer {
  const envelope = Buffer.from(`[1,0,null,"${'x'.repeat(chars)}"]`)
  return Buffer.concat([Buffer.from('Z'), deflateRawSync(envelope, { level: 9 })])
}

interface Watched {
  readonly cache: CacheStack
  readonly corrupt: CacheEventMap['corruptEntry'][]
  readonly circuit: CacheEventMap['circuit'][]
  readonly errors: CacheEventMap['error'][]
}

function watched(cache: CacheStack): Watched {
  const corrupt: Watched['corrupt'] = []
  const circuit: Watched['circuit'] = []
  const errors: Watched['errors'] = []
  cache.on('corruptEntry', (event) => corrupt.push(event))
  cache.on('circuit', (event) => circuit.push(event))
  cache.on('error', (event) => errors.push(event))
  return { cache, corrupt, circuit, errors }
}

function degraded(p: string, options: Partial<ConstructorParameters<typeof RedisLayer>[0]> = {}) {
  return watched(
    new CacheStack([new RedisLayer({ client, prefix: p, ...options })], {
      gracefulDegradation: { failureThreshold: 3, retryAfterMs: 60_000 },
    }),
  )
}

describe('a corrupt entry in Redis', () => {
  const kinds: { name: string; write: (full: string) => Promise<unknown>; reason: string }[] = [
    {
      name: 'a compressed value that does not inflate',
      write: (k) => raw.set(k, NOT_DEFLATE),
      reason: 'unreadable',
    },
    { name: 'a key of the wrong type (WRONGTYPE)', write: (k) => raw.rpush(k, 'x'), reason: 'wrong-type' },
    { name: 'JSON that does not parse', write: (k) => raw.set(k, '[1,0,nul'), reason: 'unreadable' },
    {
      name: 'a foreign value',
      write: (k) => raw.set(k, 'plain text from another app'),
      reason: 'unreadable',
    },
  ]

  for (const { name, write, reason } of kinds) {
    it(`${name}: a counted miss with an event, the breaker never moves, healthy keys stay served`, async () => {
      const p = prefix()
      await new CacheStack([new RedisLayer({ client, prefix: p })]).set('good', { ok: true })
      await write(`${p}bad`)
      const { cache, corrupt, circuit, errors } = degraded(p)
      for (let i = 0; i < 10; i++) expect(await cache.get('bad')).toBeUndefined()
      expect(circuit).toEqual([])
      expect(errors).toEqual([])
      expect(corrupt).toHaveLength(10)
      expect(corrupt[0]).toMatchObject({ key: 'bad', layer: 'redis', reason })
      expect(corrupt[0]!.error).toBeInstanceOf(CorruptEntryError)
      expect((corrupt[0]!.error as CorruptEntryError).key).toBe(`${p}bad`)
      const stats = cache.getStats()
      expect(stats).toMatchObject({ corruptEntries: 10, misses: 10, errors: 0, circuitOpens: 0 })
      expect(stats.layers[0]).toMatchObject({ misses: 10, errors: 0 })
      // The healthy key still comes from Redis, not from a loader.
      let loads = 0
      expect(await cache.getOrSet('good', async () => ++loads)).toEqual({ ok: true })
      expect(loads).toBe(0)
    })
  }

  it('is a miss in throw mode too: get does not reject, getOrSet loads and replaces it', async () => {
    const p = prefix()
    await raw.set(`${p}bad`, NOT_DEFLATE)
    await raw.rpush(`${p}list`, 'x')
    const { cache, corrupt } = watched(
      new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: p })], { onLayerError: 'throw' }),
    )
    expect(await cache.get('bad')).toBeUndefined()
    expect(await cache.getOrSet('bad', async () => 'loaded')).toBe('loaded')
    expect(await cache.getOrSet('list', async () => 'loaded too')).toBe('loaded too')
    expect(corrupt.map((event) => event.key)).toEqual(['bad', 'bad', 'list'])
    // The loaded values replaced the bad entries in Redis: another instance reads them.
    const other = new CacheStack([new RedisLayer({ client, prefix: p })])
    expect(await other.mget(['bad', 'list'])).toEqual(['loaded', 'loaded too'])
    expect(other.getStats().corruptEntries).toBe(0)
  })

  it('mget: corrupt entries are misses, the healthy ones in the same call are hits', async () => {
    const p = prefix()
    await new CacheStack([new RedisLayer({ client, prefix: p })]).mset([
      { key: 'a', value: 1 },
      { key: 'c', value: 3 },
    ])
    await raw.set(`${p}b`, NOT_DEFLATE)
    await raw.set(`${p}d`, inflatingTo(4096))
    const { cache, corrupt, circuit, errors } = degraded(p, { maxValueBytes: 1024 })
    for (let i = 0; i < 5; i++) {
      expect(await cache.mget(['a', 'b', 'c', 'd', 'e'])).toEqual([1, undefined, 3, undefined, undefined])
    }
    expect(circuit).toEqual([])
    expect(errors).toEqual([])
    expect(corrupt.slice(0, 2).map(({ key, reason }) => ({ key, reason }))).toEqual([
      { key: 'b', reason: 'unreadable' },
      { key: 'd', reason: 'too-large' },
    ])
    expect(cache.getStats()).toMatchObject({ corruptEntries: 10, hits: 10, misses: 15, errors: 0 })
  })

  it('is reported by the layer itself as CorruptEntryError (code CORRUPT_ENTRY), not LayerUnavailableError', async () => {
    const p = prefix()
    await raw.rpush(`${p}list`, 'x')
    await raw.set(`${p}bad`, NOT_DEFLATE)
    const layer = new RedisLayer({ client, prefix: p })
    const error = await layer.get('list').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CorruptEntryError)
    expect(error).toMatchObject({
      code: 'CORRUPT_ENTRY',
      layer: 'redis',
      key: `${p}list`,
      reason: 'wrong-type',
    })
    await expect(layer.get('bad')).rejects.toMatchObject({ code: 'CORRUPT_ENTRY', reason: 'unreadable' })
    // Nothing was changed by reading: the bad entries are still there for an operator to look at.
    expect(await raw.type(`${p}list`)).toBe('list')
    expect(await raw.getBuffer(`${p}bad`)).toEqual(NOT_DEFLATE)
  })
})

describe('reads are capped by maxValueBytes like writes, compressed ones included', () => {
  it('an entry that inflates past the cap is a corrupt miss, on a layer that does not compress', async () => {
    const p = prefix()
    await raw.set(`${p}bomb`, inflatingTo(64 * 1024))
    expect((await raw.strlen(`${p}bomb`)) < 1024).toBe(true)
    const { cache, corrupt, circuit } = degraded(p, { maxValueBytes: 16 * 1024 })
    for (let i = 0; i < 5; i++) expect(await cache.get('bomb')).toBeUndefined()
    expect(corrupt.map((event) => event.reason)).toEqual(Array(5).fill('too-large'))
    expect(circuit).toEqual([])
    // Under the cap, the same kind of entry reads fine (the cap is what refused it).
    await raw.set(`${p}fine`, inflatingTo(1000))
    expect(await cache.get('fine')).toBe('x'.repeat(1000))
  })

  it('the default cap (16 MiB) refuses an entry that inflates past it, off the event loop', async () => {
    const p = prefix()
    await raw.set(`${p}bomb`, inflatingTo(17 * 1024 * 1024))
    const { cache, corrupt } = degraded(p, { compression: true })
    expect(await cache.get('bomb')).toBeUndefined()
    expect(corrupt.map((event) => event.reason)).toEqual(['too-large'])
  })

  it('an uncompressed entry over the cap is a corrupt miss too (string and binary reads)', async () => {
    const p = prefix()
    await raw.set(`${p}big`, `[1,0,null,"${'x'.repeat(4096)}"]`)
    await raw.set(`${p}wide`, `[1,0,null,"${'é'.repeat(1000)}"]`)
    for (const options of [{}, { serializer: 'msgpack' as const }, { compression: true }]) {
      const { cache, corrupt } = degraded(p, { maxValueBytes: 1024, ...options })
      expect(await cache.get('big')).toBeUndefined()
      // 1000 characters, but 2000 bytes: the cap counts bytes, as writes do.
      expect(await cache.get('wide')).toBeUndefined()
      expect(corrupt.map((event) => event.reason)).toEqual(['too-large', 'too-large'])
    }
  })

  it('maxValueBytes is validated with a typed error', () => {
    for (const bad of [0, -1, 1.5, '1024', Number.NaN, 512 * 1024 * 1024 + 1]) {
      expect(() => new RedisLayer({ client, maxValueBytes: bad as number })).toThrow(InvalidOptionError)
    }
    expect(new RedisLayer({ client, maxValueBytes: 512 * 1024 * 1024 })).toBeInstanceOf(RedisLayer)
  })
})
