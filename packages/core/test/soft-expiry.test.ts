import { tracingChannel } from 'node:diagnostics_channel'
import {
  CacheClosedError,
  type CacheEventMap,
  CacheStack,
  type InvalidationContext,
  InvalidKeyError,
  InvalidOptionError,
  TRACING_CHANNELS,
} from '@layercache/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer, useFakeClock } from './support/remote-layer'

let clock: ReturnType<typeof useFakeClock>
beforeEach(() => {
  clock = useFakeClock()
})
afterEach(() => clock.restore())

/** The next 'refresh' event of the stack (a background refresh started). */
function refreshed(cache: CacheStack): Promise<void> {
  return new Promise((resolve) => {
    const off = cache.on('refresh', () => {
      off()
      resolve()
    })
  })
}

describe('expire (soft invalidation) on the memory layer', () => {
  it('stale at once for fresh-only reads; stale-while-revalidate still answers it and refreshes', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', 'old', { ttl: 60_000 })
    await cache.expire('k')
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.mget(['k'])).toEqual([undefined])
    const refresh = refreshed(cache)
    expect(await cache.getOrSet('k', () => 'new', { staleWhileRevalidate: 10_000 })).toBe('old')
    await refresh
    await cache.getOrSet('k', () => 'never', { staleWhileRevalidate: 10_000 }) // the refresh's flight
    expect(await cache.get('k')).toBe('new')
  })

  it('a getOrSet without a stale window loads; with staleIfError the expired value stands in for a failure', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('a', 'old a', { ttl: 60_000 })
    await cache.set('b', 'old b', { ttl: 60_000 })
    await cache.expire('a')
    await cache.expire('b')
    expect(await cache.getOrSet('a', () => 'new a')).toBe('new a')
    const failing = () => Promise.reject(new Error('database down'))
    expect(await cache.getOrSet('b', failing, { staleIfError: 10_000 })).toBe('old b')
  })

  it('keeps the entry’s TTL: it goes when it would have gone', async () => {
    const memory = new MemoryLayer()
    const cache = new CacheStack([memory])
    await cache.set('k', 'v', { ttl: 1000 })
    const expiresAt = memory.get('k')!.expiresAt
    await cache.expire('k')
    expect(memory.get('k')!.expiresAt).toBe(expiresAt)
    clock.advance(1001)
    expect(await cache.getOrSet('k', () => 'new', { staleWhileRevalidate: 60_000 })).toBe('new')
  })

  it('is stale whatever the clock says afterwards (a clock set back does not make it fresh)', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', 'v', { ttl: 60_000 })
    await cache.expire('k')
    clock.restore()
    clock = useFakeClock(1_700_000_000_000 - 30_000)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a hard invalidation afterwards removes it: no stale fallback outlives a delete, tag or prefix', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const failing = () => Promise.reject(new Error('database down'))
    const stale = { staleIfError: 60_000, staleWhileRevalidate: 60_000 }
    for (const [key, invalidate] of [
      ['d', () => cache.delete('d')],
      ['t', () => cache.invalidateByTag('tag')],
      ['p:1', () => cache.invalidateByPrefix('p:')],
    ] as const) {
      await cache.set(key, 'old', { ttl: 60_000, tags: ['tag'] })
      await cache.expire(key)
      await invalidate()
      await expect(cache.getOrSet(key, failing, stale)).rejects.toThrow('database down')
    }
  })

  it('a load in flight when it ran does not write a fresh copy back', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', 'old', { ttl: 60_000 })
    const loading = deferred<string>()
    const started = deferred()
    const load = cache.refresh('k', () => {
      started.resolve()
      return loading.promise
    })
    await started.promise
    await cache.expire('k')
    loading.resolve('read before the expiry')
    expect(await load).toBe('read before the expiry')
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.getOrSet('k', () => 'new', { staleWhileRevalidate: 60_000 })).toBe('old')
  })

  it('expireByTag and expireByPrefix mark what they cover, within the namespace, and count it', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const tenant = cache.namespace('t1')
    const other = cache.namespace('t2')
    await tenant.set('user:1', 1, { ttl: 60_000, tags: ['users'] })
    await tenant.set('user:2', 2, { ttl: 60_000 })
    await tenant.set('order:1', 3, { ttl: 60_000, tags: ['users'] })
    await other.set('user:1', 4, { ttl: 60_000, tags: ['users'] })
    expect(await tenant.expireByTag('users')).toBe(2)
    expect(await tenant.get('user:1')).toBeUndefined()
    expect(await tenant.get('order:1')).toBeUndefined()
    expect(await tenant.get('user:2')).toBe(2)
    expect(await other.get('user:1')).toBe(4)
    expect(await tenant.expireByPrefix('user:')).toBe(2)
    expect(await tenant.get('user:2')).toBeUndefined()
    expect(await other.get('user:1')).toBe(4)
    expect(await tenant.getOrSet('user:2', () => 0, { staleWhileRevalidate: 60_000 })).toBe(2)
  })

  it('each call is seen: the invalidate event, stats.expirations and the invalidate tracing channel', async () => {
    const cache = new CacheStack([new MemoryLayer()], { name: 'shop' })
    const tenant = cache.namespace('t1')
    await tenant.set('user:1', 1, { ttl: 60_000, tags: ['users'] })
    await tenant.set('user:2', 2, { ttl: 60_000 })
    const events: CacheEventMap['invalidate'][] = []
    cache.on('invalidate', (event) => events.push(event))
    const traced: InvalidationContext[] = []
    const onEnd = (context: object) => traced.push({ ...(context as InvalidationContext) })
    const channel = tracingChannel(TRACING_CHANNELS.invalidate)
    const handlers = { start() {}, end() {}, asyncStart() {}, asyncEnd: onEnd, error() {} }
    channel.subscribe(handlers)
    try {
      await tenant.expire('user:2')
      expect(await tenant.expireByTag('users')).toBe(1)
      expect(await tenant.expireByPrefix('user:')).toBe(2)
      await expect(tenant.expireByTag('')).rejects.toThrow(InvalidOptionError)
    } finally {
      channel.unsubscribe(handlers)
    }
    expect(events).toEqual([
      { kind: 'expire', key: 't1:user:2', count: 1 },
      { kind: 'expireByTag', tags: ['t1:users'], count: 1 },
      { kind: 'expireByPrefix', prefix: 't1:user:', count: 2 },
    ])
    expect(cache.getStats().expirations).toBe(3)
    expect(cache.getStats().invalidations).toBe(0)
    expect(traced.map(({ kind, target, count, cache }) => ({ kind, target, count, cache }))).toEqual([
      { kind: 'expire', target: ['t1:user:2'], count: 1, cache: 'shop' },
      { kind: 'expireByTag', target: ['t1:users'], count: 1, cache: 'shop' },
      { kind: 'expireByPrefix', target: ['t1:user:'], count: 2, cache: 'shop' },
      { kind: 'expireByTag', target: ['t1:'], count: undefined, cache: 'shop' },
    ])
  })

  it('a layer that cannot mark entries stale loses them instead', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote])
    await cache.set('k', 'v', { ttl: 60_000 })
    await cache.expire('k')
    expect(await remote.get('k')).toBeUndefined()
    expect(await cache.getOrSet('k', () => 'new', { staleWhileRevalidate: 60_000 })).toBe('v')
  })

  it('refuses bad input and calls on a closed stack, changing nothing', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', 'v', { ttl: 60_000, tags: ['t'] })
    await expect(cache.expire('')).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(cache.expireByTag('')).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.expireByTag(42 as never)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.expireByPrefix(7 as never)).rejects.toBeInstanceOf(InvalidKeyError)
    expect(await cache.get('k')).toBe('v')
    await cache.close()
    await expect(cache.expire('k')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(cache.expireByTag('t')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(cache.expireByPrefix('')).rejects.toBeInstanceOf(CacheClosedError)
  })
})
