/**
 * Freshness against a real Redis: CacheStack([MemoryLayer, RedisLayer]). Stampedes on an expiring hot key,
 * two instances sharing Redis, a failing database under stale-if-error, and freshness metadata round-trips.
 * Redis expires keys on its own clock, so these tests use real (short) TTLs and sleeps.
 */
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CacheStack, type CacheStackOptions, type LoaderContext, MemoryLayer, RedisLayer } from '../src'

let redis: TestRedis
let client: Redis
let run = 0

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis.close())

/** One "instance": its own MemoryLayer over the shared Redis, under this test's prefix. */
function instance(options: CacheStackOptions) {
  const memory = new MemoryLayer({ ttl: 60_000 })
  const layer = new RedisLayer({ client, prefix: `${redis.keyPrefix}freshness${run}` })
  return { memory, layer, cache: new CacheStack([memory, layer], options) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** For what a background refresh writes: polled (no event tells), with a deadline a busy machine meets. */
const POLL = { timeout: 10_000, interval: 5 }

/**
 * A loader parked until `open(value)`; `called` resolves once the stack has called it. What it loads is
 * cached for a long TTL (ctx.setTtl), so the new value stays fresh for the rest of the test whatever the
 * short TTL used to make the old one expire.
 */
function gatedLoader<T>() {
  let open!: (value: T) => void
  const promise = new Promise<T>((resolve) => {
    open = resolve
  })
  let markCalled!: () => void
  const called = new Promise<void>((resolve) => {
    markCalled = resolve
  })
  const loader = vi.fn((ctx: LoaderContext<T>) => {
    markCalled()
    ctx.setTtl(30_000)
    return promise
  })
  return { loader, open, called }
}

const CALLERS = 1000

describe('one loader call for a stampede on an expiring hot key', () => {
  it(`${CALLERS} callers on a key inside its stale-while-revalidate window: one background load`, async () => {
    run++
    const { memory, layer, cache } = instance({ ttl: 40, staleWhileRevalidate: 30_000 })
    await cache.getOrSet('hot', () => 'v1')
    await sleep(60)
    const { loader, open, called } = gatedLoader<string>()
    const results = await Promise.all(Array.from({ length: CALLERS }, () => cache.getOrSet('hot', loader)))
    // Everyone was answered with the stale value while the single refresh is still pending.
    expect(results).toEqual(Array.from({ length: CALLERS }, () => 'v1'))
    expect(cache.getStats()).toMatchObject({ backgroundRefreshes: 1, staleServed: CALLERS })
    // The background refresh reads Redis first, then calls the loader.
    await called
    open('v2')
    await vi.waitFor(() => expect(memory.get('hot')?.value).toBe('v2'), POLL)
    expect((await layer.get('hot'))?.value).toBe('v2')
    expect(await cache.getOrSet('hot', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it(`${CALLERS} callers on a key that has fully expired in both layers: one load, everyone gets it`, async () => {
    run++
    const { layer, cache } = instance({ ttl: 40 })
    await cache.getOrSet('hot', () => 'v1')
    await sleep(60)
    expect(await layer.get('hot')).toBeUndefined()
    cache.resetStats()
    const loader = vi.fn(async () => {
      await sleep(10)
      return { version: 2 }
    })
    const results = await Promise.all(Array.from({ length: CALLERS }, () => cache.getOrSet('hot', loader)))
    expect(loader).toHaveBeenCalledTimes(1)
    expect(results.every((r) => r.version === 2)).toBe(true)
    expect(cache.getStats()).toMatchObject({ loaderCalls: 1, coalesced: CALLERS - 1 })
    expect((await layer.get('hot'))?.value).toEqual({ version: 2 })
  })

  it(`${CALLERS} callers on a key missing everywhere (with freshness options on): one load`, async () => {
    run++
    const { cache } = instance({
      ttl: 1000,
      staleWhileRevalidate: 1000,
      staleIfError: 1000,
      refreshAhead: 0.5,
    })
    const loader = vi.fn(async () => {
      await sleep(10)
      return 'loaded'
    })
    const results = await Promise.all(Array.from({ length: CALLERS }, () => cache.getOrSet('cold', loader)))
    expect(loader).toHaveBeenCalledTimes(1)
    expect(results).toEqual(Array.from({ length: CALLERS }, () => 'loaded'))
  })

  it(`${CALLERS} callers on a new instance that finds the key stale in Redis only: one load`, async () => {
    run++
    const options = { ttl: 40, staleWhileRevalidate: 30_000 }
    const writer = instance(options)
    await writer.cache.getOrSet('hot', () => 'v1')
    await sleep(60)
    const reader = instance(options)
    const { loader, open, called } = gatedLoader<string>()
    const results = await Promise.all(
      Array.from({ length: CALLERS }, () => reader.cache.getOrSet('hot', loader)),
    )
    expect(results).toEqual(Array.from({ length: CALLERS }, () => 'v1'))
    // The refresh calls the loader once its fence snapshot is in Redis (just after the stale answers).
    await called
    expect(loader).toHaveBeenCalledTimes(1)
    open('v2')
    await vi.waitFor(async () => expect((await reader.layer.get('hot'))?.value).toBe('v2'), POLL)
    expect(await reader.cache.get('hot')).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it(`${CALLERS} callers on a hot key past its refresh-ahead threshold: one background load`, async () => {
    run++
    const { memory, cache } = instance({ ttl: 2000, refreshAhead: 0.025 }) // threshold 50 ms
    await cache.getOrSet('hot', () => 'v1')
    await sleep(70)
    const { loader, open, called } = gatedLoader<string>()
    const results = await Promise.all(Array.from({ length: CALLERS }, () => cache.getOrSet('hot', loader)))
    expect(results).toEqual(Array.from({ length: CALLERS }, () => 'v1'))
    expect(cache.getStats()).toMatchObject({ earlyRefreshes: CALLERS, backgroundRefreshes: 1 })
    await called
    open('v2')
    await vi.waitFor(() => expect(memory.get('hot')?.value).toBe('v2'), POLL)
    expect(await cache.getOrSet('hot', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
  })
})

describe('two instances sharing Redis', () => {
  it("A's background refresh takes the newer entry B wrote to Redis instead of calling its loader", async () => {
    run++
    const options = { ttl: 40, staleWhileRevalidate: 30_000 }
    const a = instance(options)
    const b = instance(options)
    await a.cache.getOrSet('k', () => 'v1')
    // B finds v1 in Redis (read from the layer: a plain get() misses once the 40 ms TTL has passed, which
    // on a busy machine it may have by now).
    expect((await b.layer.get('k'))?.value).toBe('v1')
    await sleep(60)
    // B refreshes: Redis now holds a newer, fresh entry; A's L1 still holds the stale v1.
    expect(await b.cache.refresh('k', () => 'v2', { ttl: 30_000 })).toBe('v2')
    expect(a.memory.get('k')?.value).toBe('v1')
    const loaderA = vi.fn(() => 'from A')
    expect(await a.cache.getOrSet('k', loaderA)).toBe('v1')
    await vi.waitFor(() => expect(a.memory.get('k')?.value).toBe('v2'), POLL)
    expect(loaderA).not.toHaveBeenCalled()
    expect(await a.cache.getOrSet('k', loaderA)).toBe('v2')
    expect(await a.cache.get('k')).toBe('v2')
    expect(loaderA).not.toHaveBeenCalled()
  })

  it('when Redis holds the same stale entry as L1, the background refresh does call the loader', async () => {
    run++
    const options = { ttl: 40, staleWhileRevalidate: 30_000 }
    const a = instance(options)
    await a.cache.getOrSet('k', () => 'v1')
    await sleep(60)
    const loaderA = vi.fn(() => 'from A')
    expect(await a.cache.getOrSet('k', loaderA)).toBe('v1')
    await vi.waitFor(() => expect(a.memory.get('k')?.value).toBe('from A'), POLL)
    expect(loaderA).toHaveBeenCalledTimes(1)
    expect((await a.layer.get('k'))?.value).toBe('from A')
  })
})

describe('a failing database under stale-if-error', () => {
  it('sees a bounded number of loader calls while every caller gets the stale value', async () => {
    run++
    const errorRetryAfter = 50
    const { cache } = instance({ ttl: 20, staleIfError: 30_000, errorRetryAfter })
    await cache.getOrSet('db', () => 'good')
    await sleep(30)
    const loader = vi.fn(async (): Promise<string> => {
      throw new Error('database down')
    })
    const answers: string[] = []
    const started = Date.now()
    // Time must pass (the throttle is a time window); the loop also goes on until enough callers came
    // by, so a loaded machine that manages few rounds in 300 ms still tests many.
    while (Date.now() - started < 300 || answers.length <= 50) {
      answers.push(...(await Promise.all(Array.from({ length: 5 }, () => cache.getOrSet('db', loader)))))
      await sleep(5)
    }
    const elapsed = Date.now() - started
    expect(answers.length).toBeGreaterThan(50)
    expect(answers.every((a) => a === 'good')).toBe(true)
    // At most one call per errorRetryAfter (plus the first), yet the throttle does let retries through.
    expect(loader.mock.calls.length).toBeLessThanOrEqual(Math.floor(elapsed / errorRetryAfter) + 1)
    expect(loader.mock.calls.length).toBeGreaterThanOrEqual(2)
    expect(cache.getStats().staleOnError).toBe(answers.length - cache.getStats().coalesced)
    // Recovery: the next call after the throttle loads and caches the new value everywhere.
    await sleep(errorRetryAfter + 5)
    // (Cached for long: the stack's 20 ms TTL would race the second instance's read on a busy machine.)
    const recovered = (ctx: LoaderContext<string>) => {
      ctx.setTtl(30_000)
      return 'recovered'
    }
    expect(await cache.getOrSet('db', recovered)).toBe('recovered')
    expect(await instance({}).cache.get('db')).toBe('recovered')
  })

  it('a delete wins over stale-if-error across the shared Redis', async () => {
    run++
    const options = { ttl: 20, staleIfError: 30_000 }
    const a = instance(options)
    await a.cache.getOrSet('k', () => 'v1')
    await sleep(30)
    expect(await a.cache.getOrSet('k', () => Promise.reject(new Error('down')))).toBe('v1')
    await a.cache.delete('k')
    const b = instance(options)
    await expect(b.cache.getOrSet('k', () => Promise.reject(new Error('down for B')))).rejects.toThrow(
      'down for B',
    )
    await expect(a.cache.getOrSet('k', () => Promise.reject(new Error('down for A')))).rejects.toThrow(
      'down for A',
    )
  })
})

describe('freshness metadata in Redis', () => {
  it('round-trips freshUntil, createdAt and loadMs, so a second stack serves stale from Redis alone', async () => {
    run++
    const options = { ttl: 40, staleWhileRevalidate: 30_000 }
    const writer = instance(options)
    const before = Date.now()
    await writer.cache.getOrSet('k', async () => {
      await sleep(15)
      return { n: 1 }
    })
    const stored = await writer.layer.get('k')
    expect(stored?.value).toEqual({ n: 1 })
    expect(stored?.createdAt).toBeGreaterThanOrEqual(before)
    expect(stored?.freshUntil).toBe(stored!.createdAt! + 40)
    expect(stored?.loadMs).toBeGreaterThanOrEqual(10)
    // The layer stamps its own expiry when the write leaves, a millisecond or so after freshUntil was set.
    expect(stored!.expiresAt - (stored!.freshUntil! + 30_000)).toBeGreaterThanOrEqual(0)
    expect(stored!.expiresAt - (stored!.freshUntil! + 30_000)).toBeLessThan(50)
    await sleep(60)
    const reader = instance(options)
    // A plain read only returns fresh values...
    expect(await reader.cache.get('k')).toBeUndefined()
    // ...getOrSet serves the stale one at once while it refreshes.
    const { loader, open, called } = gatedLoader<{ n: number }>()
    expect(await reader.cache.getOrSet('k', loader)).toEqual({ n: 1 })
    await called
    expect(loader).toHaveBeenCalledTimes(1)
    open({ n: 2 })
    await vi.waitFor(async () => expect((await writer.layer.get('k'))?.value).toEqual({ n: 2 }), POLL)
    expect(await instance(options).cache.get('k')).toEqual({ n: 2 })
  })

  it('without metadata-aware windows a stale entry read from Redis is not served by a policy-less stack', async () => {
    run++
    const writer = instance({ ttl: 40, staleWhileRevalidate: 30_000 })
    await writer.cache.set('k', 'v1')
    await sleep(60)
    const plain = instance({})
    const loader = vi.fn(() => 'loaded')
    expect(await plain.cache.getOrSet('k', loader)).toBe('loaded')
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('a cached absence round-trips: another instance answers undefined without calling its loader', async () => {
    run++
    const options = { ttl: 10_000, negativeTtl: 5_000 }
    const writer = instance(options)
    expect(await writer.cache.getOrSet('none', () => undefined)).toBeUndefined()
    const stored = await writer.layer.get('none')
    expect(stored?.absent).toBe(true)
    const reader = instance(options)
    const loader = vi.fn(() => 'found')
    expect(await reader.cache.getOrSet('none', loader)).toBeUndefined()
    expect(await reader.cache.get('none')).toBeUndefined()
    expect(loader).not.toHaveBeenCalled()
    expect(reader.cache.getStats().negativeHits).toBe(2)
  })
})
