/**
 * Concurrent reads are batched (ReadBatcher): a read while none is in flight goes out at once as a GET;
 * the others of the same turn of the event loop share one command per key and go as one MGET. These tests
 * run on a redis-server of their own: they count commands (INFO commandstats), pause the server and hold
 * a client's replies.
 */
import { CacheStack, CorruptEntryError, LayerTimeoutError, LayerUnavailableError } from '@layercache/core'
import { spawnTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { RedisLayer, type RedisLayerOptions } from '../src'

let redis: TestRedis
let raw: Redis
let n = 0
const prefix = () => `rb${++n}:`

beforeAll(async () => {
  redis = await spawnTestRedis()
  raw = redis.createClient()
})
afterEach(() => redis.server?.resume())
afterAll(() => redis.close())

/** Calls of `commands` since the last reset (INFO commandstats), 0 for those not called. */
async function callsOf(...commands: string[]): Promise<Record<string, number>> {
  const info = await raw.info('commandstats')
  const calls: Record<string, number> = {}
  for (const command of commands) {
    calls[command] = Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0)
  }
  return calls
}

/** A layer on a client of its own (so its connection can be paused or dropped), and a stack over it. */
function reader(p: string, options: Partial<RedisLayerOptions> = {}) {
  const client = redis.createClient()
  const layer = new RedisLayer({ client, prefix: p, ...options })
  return { client, layer, cache: new CacheStack([layer]) }
}

async function seed(p: string, entries: { key: string; value: unknown }[], options = {}): Promise<void> {
  await new CacheStack([new RedisLayer({ client: raw, prefix: p, ...options })]).mset(entries)
}

const products = Array.from({ length: 10 }, (_, i) => ({ key: `p${i}`, value: { id: i, tags: ['a', i] } }))

describe('concurrent reads on one Redis', () => {
  it('share one command per key and go as one MGET; every caller gets its own copy', async () => {
    const p = prefix()
    await seed(p, products)
    const { client, cache } = reader(p)
    await client.ping()
    await raw.config('RESETSTAT')
    const wanted = [...Array.from({ length: 50 }, (_, i) => `p${i % 10}`), 'missing', 'missing']
    const answers = await Promise.all(wanted.map((key) => cache.get(key)))
    expect(answers).toEqual([
      ...Array.from({ length: 50 }, (_, i) => ({ id: i % 10, tags: ['a', i % 10] })),
      undefined,
      undefined,
    ])
    // The first read went out alone at once; the 51 others (11 distinct keys) as one MGET.
    expect(await callsOf('get', 'mget', 'exists')).toEqual({ get: 1, mget: 1, exists: 1 })
    expect(answers[1]).not.toBe(answers[11])
    expect(cache.getStats()).toMatchObject({ hits: 50, misses: 2 })
  })

  it('callers of one key share one GET (a batch of one key is a plain GET)', async () => {
    const p = prefix()
    await seed(p, products)
    const { client, cache } = reader(p)
    await client.ping()
    await raw.config('RESETSTAT')
    const answers = await Promise.all(Array.from({ length: 20 }, () => cache.get('p3')))
    expect(answers).toEqual(Array(20).fill({ id: 3, tags: ['a', 3] }))
    expect(new Set(answers).size).toBe(20)
    expect(await callsOf('get', 'mget')).toEqual({ get: 2, mget: 0 })
  })

  it('binary reads (msgpack, compression) and a value another serializer wrote are answered right', async () => {
    const p = prefix()
    const big = 'x'.repeat(5000)
    await seed(
      p,
      [
        { key: 'm1', value: { at: new Date(0), n: 1 } },
        { key: 'm2', value: new Map([['k', 2]]) },
      ],
      { serializer: 'msgpack' },
    )
    await seed(
      p,
      [
        { key: 'z', value: big },
        { key: 'j', value: [1] },
      ],
      { compression: { threshold: 256 } },
    )
    for (const options of [{ serializer: 'msgpack' as const }, { compression: true }, {}]) {
      const { cache } = reader(p, options)
      const answers = await Promise.all(['j', 'm1', 'm2', 'z', 'nothing', 'm1'].map((key) => cache.get(key)))
      const m1 = { at: new Date(0), n: 1 }
      expect(answers).toEqual([[1], m1, new Map([['k', 2]]), big, undefined, m1])
      expect(cache.getStats()).toMatchObject({ hits: 5, misses: 1, corruptEntries: 0 })
    }
  })
})

describe('a read never joins a command already sent', () => {
  it('a get started after a delete resolved misses, while a batch that read the old value is still in flight', async () => {
    const p = prefix()
    await seed(p, [{ key: 'k', value: 'old' }, ...products])
    const { client, cache } = reader(p, { commandTimeout: 30_000 })
    const deleter = new CacheStack([new RedisLayer({ client: raw, prefix: p })])
    await client.ping()
    await raw.config('RESETSTAT')
    // Replies to this client are held in its socket until resume(): its commands still reach Redis.
    client.stream.pause()
    const opener = cache.get('p0')
    const before = Promise.all([cache.get('k'), cache.get('p1')])
    await vi.waitFor(async () => expect((await callsOf('mget')).mget).toBe(1))
    // The MGET read 'old' in Redis; its answer has not arrived.
    await deleter.delete('k')
    const after = cache.get('k')
    client.stream.resume()
    expect(await opener).toEqual({ id: 0, tags: ['a', 0] })
    expect(await before).toEqual(['old', { id: 1, tags: ['a', 1] }])
    expect(await after).toBeUndefined()
  })
})

describe('bad entries inside a batch', () => {
  it('a key of another type is a corrupt entry (wrong-type), its neighbours are answered', async () => {
    const p = prefix()
    await seed(p, products)
    await raw.rpush(`${p}list`, 'x')
    await raw.hset(`${p}hash`, 'f', 'v')
    await raw.set(`${p}big`, `[1,0,null,"${'x'.repeat(4096)}"]`)
    const { client, layer } = reader(p, { maxValueBytes: 1024 })
    await client.ping()
    await raw.config('RESETSTAT')
    const keys = ['p0', 'list', 'p1', 'hash', 'missing', 'big', 'list']
    const settled = await Promise.allSettled(keys.map((key) => layer.get(key)))
    expect(await callsOf('mget')).toEqual({ mget: 1 })
    const outcome = settled.map((s) =>
      s.status === 'fulfilled'
        ? (s.value?.value ?? null)
        : `${(s.reason as CorruptEntryError).reason} ${(s.reason as CorruptEntryError).key}`,
    )
    expect(outcome).toEqual([
      { id: 0, tags: ['a', 0] },
      `wrong-type ${p}list`,
      { id: 1, tags: ['a', 1] },
      `wrong-type ${p}hash`,
      null,
      `too-large ${p}big`,
      `wrong-type ${p}list`,
    ])
    for (const s of settled) {
      if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(CorruptEntryError)
    }

    // Through a stack: counted misses with events, the breaker never moves.
    const stack = new CacheStack([new RedisLayer({ client, prefix: p, maxValueBytes: 1024 })], {
      gracefulDegradation: { failureThreshold: 1, retryAfterMs: 60_000 },
    })
    const corrupt: string[] = []
    stack.on('corruptEntry', ({ key, reason }) => corrupt.push(`${reason} ${key}`))
    const answers = await Promise.all(keys.map((key) => stack.get(key)))
    expect(answers).toEqual([
      products[0]!.value,
      undefined,
      products[1]!.value,
      undefined,
      undefined,
      undefined,
      undefined,
    ])
    expect(corrupt.sort()).toEqual(['too-large big', 'wrong-type hash', 'wrong-type list', 'wrong-type list'])
    expect(stack.getStats()).toMatchObject({ corruptEntries: 4, errors: 0, circuitOpens: 0 })
  })
})

describe('failures of a batch', () => {
  it('a batch that does not answer in time rejects every caller with LayerTimeoutError; later reads work', async () => {
    const p = prefix()
    await seed(p, products)
    const { client, layer } = reader(p, { commandTimeout: 200 })
    await client.ping()
    redis.server!.pause()
    const settled = await Promise.allSettled(['p0', 'p1', 'p2', 'p1'].map((key) => layer.get(key)))
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected'])
    for (const s of settled) expect((s as PromiseRejectedResult).reason).toBeInstanceOf(LayerTimeoutError)
    redis.server!.resume()
    const answers = await Promise.all(['p3', 'p4', 'p3'].map((key) => layer.get(key)))
    expect(answers.map((entry) => entry?.value)).toEqual([
      products[3]!.value,
      products[4]!.value,
      products[3]!.value,
    ])
  })

  it('a batch collected while the connection is lost is refused at once (LayerUnavailableError)', async () => {
    const p = prefix()
    await seed(p, products)
    const { client, layer } = reader(p, { commandTimeout: 30_000 })
    await client.ping()
    redis.server!.pause()
    // Held in flight: the server is paused, and ioredis keeps the command to send again after reconnecting.
    const opener = layer.get('p0').catch((error: unknown) => error)
    client.stream.destroy()
    await vi.waitFor(() => expect(client.status).not.toBe('ready'))
    const settled = await Promise.allSettled(['p1', 'p2'].map((key) => layer.get(key)))
    for (const s of settled) {
      expect((s as PromiseRejectedResult).reason).toBeInstanceOf(LayerUnavailableError)
      expect(((s as PromiseRejectedResult).reason as Error).message).toMatch(/refused/)
    }
    redis.server!.resume()
    await vi.waitFor(() => expect(client.status).toBe('ready'), { timeout: 10_000 })
    await opener
    expect((await layer.get('p5'))?.value).toEqual(products[5]!.value)
  })
})
