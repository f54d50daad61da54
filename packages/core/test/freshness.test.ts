/**
 * Freshness and stampede control: stale-while-revalidate, stale-if-error (with its throttle), soft and hard
 * loader timeouts, refresh-ahead and probabilistic early expiration, TTL jitter, negative caching,
 * shouldCache, loader-adjusted TTL and tags, warm() and refresh(). Time only moves with the fake clock.
 */
import {
  type CacheEntry,
  type CacheEventMap,
  type CacheLayer,
  CacheStack,
  type CacheStackOptions,
  type CommitWrite,
  type GetOrSetOptions,
  InvalidOptionError,
  InvalidTtlError,
  LayerCacheError,
  type LayerWrite,
  type LoaderContext,
  LoaderTimeoutError,
} from '@layercache/core'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { deferred, flush, MemoryLayer, ticks, useFakeClock } from './support/remote-layer'

let clock: ReturnType<typeof useFakeClock>
let T0: number

beforeEach(() => {
  clock = useFakeClock()
  T0 = Date.now()
})

afterEach(() => {
  vi.restoreAllMocks()
  clock.restore()
})

/**
 * A remote-like layer (asynchronous, not local) that keeps every entry field, freshness metadata included,
 * as RedisLayer does. (The RemoteLayer double of ./support stores only value, expiry and tags.)
 */
class MetaRemote implements CacheLayer {
  readonly local = false as const
  readonly store = new MemoryLayer({ name: 'store', protection: 'clone' })
  writes = 0

  constructor(readonly name = 'remote') {}

  get(key: string): Promise<CacheEntry | undefined> {
    return Promise.resolve().then(() => this.store.get(key))
  }

  getMany(keys: readonly string[]): Promise<(CacheEntry | undefined)[]> {
    return Promise.resolve().then(() => this.store.getMany(keys))
  }

  prepareWrites(writes: readonly LayerWrite[]): CommitWrite {
    const commit = this.store.prepareWrites(writes)
    return () =>
      Promise.resolve().then(() => {
        this.writes++
        commit()
      })
  }

  delete(key: string): Promise<void> {
    return Promise.resolve().then(() => this.store.delete(key))
  }

  deleteMany(keys: readonly string[]): Promise<void> {
    return Promise.resolve().then(() => this.store.deleteMany(keys))
  }

  has(key: string): Promise<boolean> {
    return Promise.resolve().then(() => this.store.has(key))
  }

  clear(): Promise<void> {
    return Promise.resolve().then(() => this.store.clear())
  }
}

interface Seen {
  stale: CacheEventMap['stale'][]
  refresh: CacheEventMap['refresh'][]
  timeout: CacheEventMap['timeout'][]
  warm: CacheEventMap['warm'][]
  fenced: CacheEventMap['fenced'][]
}

function watch(cache: CacheStack): Seen {
  const seen: Seen = { stale: [], refresh: [], timeout: [], warm: [], fenced: [] }
  cache.on('stale', (e) => seen.stale.push(e))
  cache.on('refresh', (e) => seen.refresh.push(e))
  cache.on('timeout', (e) => seen.timeout.push(e))
  cache.on('warm', (e) => seen.warm.push(e))
  cache.on('fenced', (e) => seen.fenced.push(e))
  return seen
}

function memoryStack(options: CacheStackOptions = {}) {
  const l1 = new MemoryLayer()
  const cache = new CacheStack([l1], options)
  return { l1, cache, seen: watch(cache) }
}

function twoLayerStack(options: CacheStackOptions = {}, remote = new MetaRemote()) {
  const l1 = new MemoryLayer()
  const cache = new CacheStack([l1, remote], options)
  return { l1, remote, cache, seen: watch(cache) }
}

/** A loader parked until `finish`/`fail`; records each call's context. */
function gatedLoader<T>() {
  const gates: ReturnType<typeof deferred<T>>[] = []
  const contexts: LoaderContext<T>[] = []
  const loader = vi.fn((context: LoaderContext<T>) => {
    contexts.push(context)
    const gate = deferred<T>()
    gates.push(gate)
    return gate.promise
  })
  return {
    loader,
    contexts,
    finish: (value: T, call = gates.length - 1) => gates[call]!.resolve(value),
    fail: (error: unknown, call = gates.length - 1) => gates[call]!.reject(error),
  }
}

/** Tracks whether a promise has settled without awaiting it. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false }
  promise.then(
    (value) => {
      state.settled = true
      state.value = value
    },
    (error: unknown) => {
      state.settled = true
      state.error = error
    },
  )
  return state
}

const failing = (message = 'database down') =>
  vi.fn((): string => {
    throw new Error(message)
  })

describe('stale-while-revalidate', () => {
  const options = { ttl: 1000, staleWhileRevalidate: 5000 }

  it('serves the stale value at once inside the window and runs one background refresh for 50 callers', async () => {
    const { l1, cache, seen } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    cache.resetStats()
    const { loader, finish } = gatedLoader<string>()
    const results = await Promise.all(Array.from({ length: 50 }, () => cache.getOrSet('k', loader)))
    // Every caller is answered while the refresh is still pending.
    expect(results).toEqual(Array.from({ length: 50 }, () => 'v1'))
    expect(loader).toHaveBeenCalledTimes(1)
    expect(seen.stale).toEqual(Array.from({ length: 50 }, () => ({ key: 'k', reason: 'revalidate' })))
    expect(seen.refresh).toEqual([{ key: 'k', reason: 'stale' }])
    expect(cache.getStats()).toMatchObject({
      staleServed: 50,
      staleOnError: 0,
      staleOnTimeout: 0,
      backgroundRefreshes: 1,
      loaderCalls: 1,
      earlyRefreshes: 0,
    })
    finish('v2')
    await flush()
    expect(l1.get('k')?.value).toBe('v2')
    expect(l1.get('k')?.freshUntil).toBe(Date.now() + 1000)
    expect(await cache.getOrSet('k', loader)).toBe('v2')
    expect(await cache.get('k')).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
    expect(cache.getStats().staleServed).toBe(50)
  })

  it('passes the stale value to the background loader as ctx.stale', async () => {
    const { cache } = memoryStack(options)
    await cache.getOrSet('k', () => ({ n: 1 }))
    clock.advance(1001)
    const { loader, contexts, finish } = gatedLoader<{ n: number }>()
    expect(await cache.getOrSet('k', loader)).toEqual({ n: 1 })
    await flush()
    expect(contexts).toHaveLength(1)
    expect(contexts[0]!.key).toBe('k')
    expect(contexts[0]!.stale).toEqual({ n: 1 })
    expect(contexts[0]!.signal.aborted).toBe(false)
    finish({ n: 2 })
    await flush()
    expect(await cache.get('k')).toEqual({ n: 2 })
  })

  it('loads synchronously once the window has passed', async () => {
    const { cache, seen } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1000 + 5000)
    cache.resetStats()
    const { loader, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(pending.settled).toBe(false)
    finish('v2')
    await flush()
    expect(pending).toMatchObject({ settled: true, value: 'v2' })
    expect(seen.stale).toEqual([])
    expect(cache.getStats()).toMatchObject({ staleServed: 0, backgroundRefreshes: 0 })
  })

  it('a per-call window applies to entries written with freshness metadata', async () => {
    const { cache } = memoryStack({ ttl: 1000, staleIfError: 10_000 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(2000)
    const { loader, finish } = gatedLoader<string>()
    // Without a window the stale entry is only a fallback: the caller waits for the loader.
    const waiting = track(cache.getOrSet('k', loader))
    await flush()
    expect(waiting.settled).toBe(false)
    finish('v2')
    await flush()
    expect(waiting.value).toBe('v2')
    clock.advance(2000)
    // With a per-call window it is served at once.
    expect(await cache.getOrSet('k', loader, { staleWhileRevalidate: 5000 })).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('plain get() answers undefined for an entry past its fresh TTL, even inside the window', async () => {
    const { l1, cache } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    expect(await cache.get('k')).toBe('v1')
    clock.advance(1000)
    expect(l1.get('k')?.value).toBe('v1')
    expect(await cache.get('k')).toBeUndefined()
    // getOrSet still serves it stale.
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v1')
  })

  it('set() on a stack with a window writes an entry that getOrSet later serves stale', async () => {
    const { l1, cache, seen } = memoryStack(options)
    await cache.set('k', 'written')
    const entry = l1.get('k')
    expect(entry?.freshUntil).toBe(T0 + 1000)
    expect(entry?.createdAt).toBe(T0)
    expect(entry?.expiresAt).toBe(T0 + 6000)
    clock.advance(3000)
    const { loader, finish } = gatedLoader<string>()
    expect(await cache.getOrSet('k', loader)).toBe('written')
    expect(seen.stale).toEqual([{ key: 'k', reason: 'revalidate' }])
    expect(loader).toHaveBeenCalledTimes(1)
    finish('loaded')
    await flush()
    expect(await cache.get('k')).toBe('loaded')
  })

  it('a new instance serves a stale entry from the lower layer at once and refreshes it once', async () => {
    const remote = new MetaRemote()
    const writer = twoLayerStack(options, remote)
    await writer.cache.getOrSet('k', () => 'v1')
    await flush()
    clock.advance(1500)
    // A second instance: empty L1, the stale entry only in the shared remote layer.
    const reader = twoLayerStack(options, remote)
    const { loader, contexts, finish } = gatedLoader<string>()
    const results = await Promise.all(Array.from({ length: 20 }, () => reader.cache.getOrSet('k', loader)))
    expect(results).toEqual(Array.from({ length: 20 }, () => 'v1'))
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(contexts[0]!.stale).toBe('v1')
    finish('v2')
    await flush()
    expect(await reader.cache.get('k')).toBe('v2')
    expect(remote.store.get('k')?.value).toBe('v2')
  })

  it('a stale entry served from the lower layer is visible in events and stats', async () => {
    const remote = new MetaRemote()
    const writer = twoLayerStack(options, remote)
    await writer.cache.getOrSet('k', () => 'v1')
    await flush()
    clock.advance(1500)
    const reader = twoLayerStack(options, remote)
    const { loader, finish } = gatedLoader<string>()
    expect(await reader.cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    finish('v2')
    await flush()
    expect(reader.seen.stale).toEqual([{ key: 'k', reason: 'revalidate' }])
    expect(reader.seen.refresh).toEqual([{ key: 'k', reason: 'stale' }])
    expect(reader.cache.getStats()).toMatchObject({ staleServed: 1, backgroundRefreshes: 1 })
  })

  it('mget answers undefined for an entry past its fresh TTL, like get', async () => {
    const { cache } = memoryStack(options)
    await cache.set('k', 'v1')
    await cache.set('other', 'o', { ttl: 5000 })
    clock.advance(1500)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.mget(['k', 'other'])).toEqual([undefined, 'o'])
  })
})

describe('stale-if-error', () => {
  const options = { ttl: 1000, staleIfError: 10_000, errorRetryAfter: 500 }

  it('answers with the last value when the loader throws, visible in stats and events', async () => {
    const { cache, seen } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    cache.resetStats()
    const loader = failing()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    expect(loader).toHaveBeenCalledTimes(1)
    expect(seen.stale).toEqual([{ key: 'k', reason: 'error' }])
    expect(cache.getStats()).toMatchObject({
      staleServed: 1,
      staleOnError: 1,
      loaderCalls: 1,
      loaderErrors: 1,
      backgroundRefreshes: 0,
    })
  })

  it('does not call a failing loader again within errorRetryAfter, and does after it', async () => {
    const { cache } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const loader = failing()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    for (let i = 0; i < 20; i++) expect(await cache.getOrSet('k', loader)).toBe('v1')
    clock.advance(499)
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    expect(loader).toHaveBeenCalledTimes(1)
    expect(cache.getStats().staleOnError).toBe(22)
    clock.advance(1)
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    expect(loader).toHaveBeenCalledTimes(2)
    // Still failing: throttled again from the second failure.
    clock.advance(499)
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    expect(loader).toHaveBeenCalledTimes(2)
    clock.advance(1)
    // The database is back: the next call loads and the new value is fresh.
    const healthy = vi.fn(() => 'v2')
    expect(await cache.getOrSet('k', healthy)).toBe('v2')
    expect(await cache.getOrSet('k', healthy)).toBe('v2')
    expect(healthy).toHaveBeenCalledTimes(1)
  })

  it('concurrent callers during a failing load share one loader call and all get the stale value', async () => {
    const { cache } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const { loader, fail } = gatedLoader<string>()
    const calls = Array.from({ length: 30 }, () => cache.getOrSet('k', loader))
    await flush()
    fail(new Error('down'))
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 30 }, () => 'v1'))
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('lets the error through once the stale-if-error window has passed', async () => {
    const { cache } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1000 + 10_000)
    const loader = failing('still down')
    await expect(cache.getOrSet('k', loader)).rejects.toThrow('still down')
    expect(cache.getStats().staleOnError).toBe(0)
  })

  it('a shorter per-call window refuses an entry that the stack would still keep as a fallback', async () => {
    const { l1, cache } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1000 + 3000)
    expect(l1.get('k')?.value).toBe('v1')
    await expect(cache.getOrSet('k', failing('nope'), { staleIfError: 2000 })).rejects.toThrow('nope')
    expect(await cache.getOrSet('k', failing(), { staleIfError: 4000 })).toBe('v1')
  })

  it('a hard timeout also falls back to the stale value', async () => {
    const { l1, cache, seen } = memoryStack({ ...options, hardTimeout: 200 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    cache.resetStats()
    const { loader, contexts, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(199)
    await flush()
    expect(pending.settled).toBe(false)
    clock.advance(1)
    await flush()
    expect(pending).toMatchObject({ settled: true, value: 'v1' })
    expect(contexts[0]!.signal.aborted).toBe(true)
    expect(seen.timeout).toEqual([{ key: 'k', kind: 'hard' }])
    expect(seen.stale).toEqual([{ key: 'k', reason: 'error' }])
    expect(cache.getStats()).toMatchObject({ hardTimeouts: 1, staleOnError: 1, staleServed: 1 })
    finish('late')
    await flush()
    expect(l1.get('k')?.value).toBe('v1')
  })

  it('never serves a deleted value as a fallback (invalidation wins), also after a throttled failure', async () => {
    const { l1, remote, cache } = twoLayerStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    // Stale in L1 and in the remote layer; a failure arms the throttle.
    expect(await cache.getOrSet('k', failing())).toBe('v1')
    await cache.delete('k')
    expect(l1.get('k')).toBeUndefined()
    expect(remote.store.get('k')).toBeUndefined()
    const loader = failing('after delete')
    await expect(cache.getOrSet('k', loader)).rejects.toThrow('after delete')
    // The delete also cleared the throttle: the loader was asked, not skipped.
    expect(loader).toHaveBeenCalledTimes(1)
    await expect(cache.getOrSet('k', loader)).rejects.toThrow('after delete')
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('never serves a deleted value as a fallback when the delete lands while the loader runs', async () => {
    const { l1, cache, seen } = memoryStack(options)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const { loader, fail } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    await cache.delete('k')
    fail(new Error('loader failed after the delete'))
    await expect(pending).rejects.toThrow('loader failed after the delete')
    expect(seen.stale).toEqual([])
    expect(l1.get('k')).toBeUndefined()
  })
  it('never answers a soft timeout with a value deleted while the loader runs', async () => {
    const { cache, seen } = memoryStack({ ...options, softTimeout: 100 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const { loader, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    await cache.delete('k')
    clock.advance(100)
    await flush()
    // No stale value is at hand any more: the caller waits for the loader.
    expect(pending.value).not.toBe('v1')
    finish('v2')
    await flush()
    expect(pending).toMatchObject({ settled: true, value: 'v2' })
    expect(seen.stale).toEqual([])
  })
})

describe('loader timeouts', () => {
  const staleOptions = { ttl: 1000, staleIfError: 10_000, softTimeout: 100 }

  it('a soft timeout answers with the stale value and the loader still updates the cache', async () => {
    const { l1, cache, seen } = memoryStack(staleOptions)
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    cache.resetStats()
    const { loader, contexts, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(99)
    await flush()
    expect(pending.settled).toBe(false)
    clock.advance(1)
    await flush()
    expect(pending).toMatchObject({ settled: true, value: 'v1' })
    expect(contexts[0]!.stale).toBe('v1')
    expect(seen.timeout).toEqual([{ key: 'k', kind: 'soft' }])
    expect(seen.stale).toEqual([{ key: 'k', reason: 'timeout' }])
    expect(cache.getStats()).toMatchObject({ softTimeouts: 1, staleOnTimeout: 1, staleServed: 1 })
    // A caller arriving while the loader runs on joins it and gets the stale answer; no second load.
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    expect(loader).toHaveBeenCalledTimes(1)
    clock.advance(400)
    finish('v2')
    await flush()
    expect(l1.get('k')?.value).toBe('v2')
    expect(l1.get('k')?.freshUntil).toBe(Date.now() + 1000)
    expect(await cache.getOrSet('k', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('a soft timeout without a stale value waits for the loader', async () => {
    const { cache, seen } = memoryStack(staleOptions)
    const { loader, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(5000)
    await flush()
    expect(pending.settled).toBe(false)
    finish('slow')
    await flush()
    expect(pending).toMatchObject({ settled: true, value: 'slow' })
    expect(seen.timeout).toEqual([])
    expect(cache.getStats()).toMatchObject({ softTimeouts: 0, staleOnTimeout: 0 })
    expect(await cache.get('k')).toBe('slow')
  })

  it('a hard timeout rejects with LoaderTimeoutError, aborts the signal and drops the late result', async () => {
    const { l1, cache, seen } = memoryStack({ ttl: 1000, hardTimeout: 200 })
    const { loader, contexts, finish } = gatedLoader<string>()
    const first = track(cache.getOrSet('k', loader))
    const joined = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(199)
    await flush()
    expect(first.settled).toBe(false)
    expect(contexts[0]!.signal.aborted).toBe(false)
    clock.advance(1)
    await flush()
    expect(first.settled).toBe(true)
    expect(first.error).toBeInstanceOf(LoaderTimeoutError)
    expect(first.error).toBeInstanceOf(LayerCacheError)
    expect(first.error).toMatchObject({ code: 'LOADER_TIMEOUT', key: 'k', timeoutMs: 200 })
    expect(joined.error).toBeInstanceOf(LoaderTimeoutError)
    expect(contexts[0]!.signal.aborted).toBe(true)
    expect(contexts[0]!.signal.reason).toBeInstanceOf(LoaderTimeoutError)
    expect(seen.timeout).toEqual([{ key: 'k', kind: 'hard' }])
    expect(cache.getStats()).toMatchObject({ hardTimeouts: 1, loaderErrors: 1 })
    // The timed-out flight is detached: a new call starts a new load while the first still runs.
    const second = track(cache.getOrSet('k', loader))
    await flush()
    expect(loader).toHaveBeenCalledTimes(2)
    finish('late', 0)
    await flush()
    expect(l1.get('k')).toBeUndefined()
    expect(second.settled).toBe(false)
    finish('second', 1)
    await flush()
    expect(second).toMatchObject({ settled: true, value: 'second' })
    expect(l1.get('k')?.value).toBe('second')
  })

  it('a hard timeout without a retry leaves nothing cached', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, hardTimeout: 50 })
    const { loader, finish } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    const rejected = expect(pending).rejects.toBeInstanceOf(LoaderTimeoutError)
    await flush()
    clock.advance(50)
    await rejected
    finish('late')
    await flush()
    expect(l1.get('k')).toBeUndefined()
    expect(await cache.get('k')).toBeUndefined()
  })

  it('soft then hard: stale at the soft timeout, the load is abandoned at the hard one', async () => {
    const { l1, cache } = memoryStack({ ...staleOptions, hardTimeout: 300 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const { loader, contexts, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(100)
    await flush()
    expect(pending.value).toBe('v1')
    clock.advance(200)
    await flush()
    expect(contexts[0]!.signal.aborted).toBe(true)
    finish('too late')
    await flush()
    expect(l1.get('k')?.value).toBe('v1')
    expect(cache.getStats()).toMatchObject({ softTimeouts: 1, hardTimeouts: 1, staleServed: 1 })
  })
})

describe('early refresh', () => {
  it('refresh-ahead: past the threshold a hit returns the current value and one caller refreshes', async () => {
    const { l1, cache, seen } = memoryStack({ ttl: 1000, refreshAhead: 0.8 })
    await cache.getOrSet('k', () => 'v1')
    const { loader, contexts, finish } = gatedLoader<string>()
    clock.advance(799)
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).not.toHaveBeenCalled()
    expect(cache.getStats().earlyRefreshes).toBe(0)
    clock.advance(1)
    const results = await Promise.all(Array.from({ length: 40 }, () => cache.getOrSet('k', loader)))
    expect(results).toEqual(Array.from({ length: 40 }, () => 'v1'))
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(contexts[0]!.stale).toBe('v1')
    expect(seen.refresh).toEqual([{ key: 'k', reason: 'ahead' }])
    expect(seen.stale).toEqual([])
    expect(cache.getStats()).toMatchObject({ earlyRefreshes: 40, backgroundRefreshes: 1, staleServed: 0 })
    finish('v2')
    await flush()
    expect(l1.get('k')).toMatchObject({ value: 'v2', createdAt: T0 + 800, freshUntil: T0 + 1800 })
    expect(await cache.getOrSet('k', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('a failing refresh-ahead does not count a stale value served: the caller got a fresh one', async () => {
    const { cache, seen } = memoryStack({ ttl: 1000, refreshAhead: 0.5, staleIfError: 5000 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(600)
    const loader = failing()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(seen.stale).toEqual([])
    expect(cache.getStats()).toMatchObject({ staleServed: 0, staleOnError: 0 })
  })

  it('a failing background refresh inside the SWR window counts one stale answer per read', async () => {
    const { cache, seen } = memoryStack({ ttl: 1000, staleWhileRevalidate: 5000, staleIfError: 5000 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(1500)
    const loader = failing()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(seen.stale).toEqual([
      { key: 'k', reason: 'revalidate' },
      { key: 'k', reason: 'revalidate' },
    ])
    expect(cache.getStats()).toMatchObject({ staleServed: 2, staleOnError: 0 })
  })

  it('refresh-ahead also fires for an entry read from the lower layer past the threshold', async () => {
    const remote = new MetaRemote()
    const writer = twoLayerStack({ ttl: 1000, refreshAhead: 0.5 }, remote)
    await writer.cache.getOrSet('k', () => 'v1')
    await flush()
    clock.advance(600)
    const reader = twoLayerStack({ ttl: 1000, refreshAhead: 0.5 }, remote)
    const { loader, finish } = gatedLoader<string>()
    expect(await reader.cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(reader.seen.refresh).toEqual([{ key: 'k', reason: 'ahead' }])
    finish('v2')
    await flush()
    expect(await reader.cache.get('k')).toBe('v2')
  })

  it('early expiration (XFetch) records the load time and fires by Math.random and beta', async () => {
    const { l1, cache, seen } = memoryStack({ ttl: 1000, earlyExpiration: 1 })
    const first = gatedLoader<string>()
    const loading = cache.getOrSet('k', first.loader)
    await flush()
    clock.advance(100)
    first.finish('v1')
    expect(await loading).toBe('v1')
    expect(l1.get('k')).toMatchObject({ loadMs: 100, createdAt: T0 + 100, freshUntil: T0 + 1100 })
    clock.advance(500) // 500 ms before expiry; gap = -100 * beta * ln(random)
    const { loader, finish } = gatedLoader<string>()
    const random = vi.spyOn(Math, 'random')
    random.mockReturnValue(0.01) // gap ≈ 460 < 500: not yet
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    random.mockReturnValue(1) // gap 0
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).not.toHaveBeenCalled()
    expect(cache.getStats().earlyRefreshes).toBe(0)
    // A larger beta makes the same draw fire.
    random.mockReturnValue(0.01) // gap ≈ 921 with beta 2
    expect(await cache.getOrSet('k', loader, { earlyExpiration: 2 })).toBe('v1')
    random.mockReturnValue(0.001) // gap ≈ 691 with beta 1
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    random.mockRestore()
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(seen.refresh).toEqual([{ key: 'k', reason: 'early' }])
    expect(cache.getStats()).toMatchObject({ earlyRefreshes: 2, backgroundRefreshes: 1, staleServed: 0 })
    finish('v2')
    await flush()
    expect(await cache.get('k')).toBe('v2')
  })

  it('early expiration never fires for an entry whose load took no time', async () => {
    const { cache } = memoryStack({ ttl: 1000, earlyExpiration: 1 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(999)
    vi.spyOn(Math, 'random').mockReturnValue(0)
    const loader = vi.fn(() => 'v2')
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).not.toHaveBeenCalled()
  })
})

describe('jitter', () => {
  it('shortens the TTL by at most the jitter share and never lengthens it', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, jitter: 0.2 })
    const random = vi.spyOn(Math, 'random')
    random.mockReturnValue(0)
    await cache.getOrSet('a', () => 1)
    random.mockReturnValue(0.5)
    await cache.getOrSet('b', () => 1)
    random.mockReturnValue(0.999999)
    await cache.getOrSet('c', () => 1)
    await cache.set('d', 1)
    random.mockRestore()
    expect(l1.get('a')?.expiresAt).toBe(T0 + 1000)
    expect(l1.get('b')?.expiresAt).toBe(T0 + 900)
    expect(l1.get('c')?.expiresAt).toBe(T0 + 800)
    expect(l1.get('d')?.expiresAt).toBe(T0 + 800)
    for (let i = 0; i < 200; i++) await cache.set(`r${i}`, i)
    for (let i = 0; i < 200; i++) {
      const ttl = l1.get(`r${i}`)!.expiresAt - T0
      expect(ttl).toBeGreaterThanOrEqual(800)
      expect(ttl).toBeLessThanOrEqual(1000)
    }
    clock.advance(801)
    expect(await cache.get('c')).toBeUndefined()
    expect(await cache.get('a')).toBe(1)
  })

  it('jitters the fresh TTL and keeps the stale window after it', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, jitter: 0.5, staleWhileRevalidate: 3000 })
    vi.spyOn(Math, 'random').mockReturnValue(0.999999)
    await cache.getOrSet('k', () => 1)
    expect(l1.get('k')).toMatchObject({ freshUntil: T0 + 500, expiresAt: T0 + 3500, createdAt: T0 })
  })
})

describe('negative caching', () => {
  it('caches undefined for negativeTtl: later reads answer undefined without calling the loader', async () => {
    const { cache } = memoryStack({ ttl: 10_000, negativeTtl: 500 })
    const loader = vi.fn((): string | undefined => undefined)
    expect(await cache.getOrSet('k', loader)).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ loaderCalls: 1, uncached: 0 })
    expect(await cache.getOrSet('k', loader)).toBeUndefined()
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(true)
    expect(loader).toHaveBeenCalledTimes(1)
    clock.advance(499)
    expect(await cache.getOrSet('k', loader)).toBeUndefined()
    expect(loader).toHaveBeenCalledTimes(1)
    clock.advance(2)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(false)
    loader.mockReturnValue('now here')
    expect(await cache.getOrSet('k', loader)).toBe('now here')
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('counts negative hits for reads answered by a cached absence, not for the load itself', async () => {
    const { cache } = memoryStack({ ttl: 10_000, negativeTtl: 500 })
    const loader = vi.fn((): string | undefined => undefined)
    await cache.getOrSet('k', loader)
    expect(cache.getStats().negativeHits).toBe(0)
    await cache.getOrSet('k', loader)
    await cache.get('k')
    expect(cache.getStats().negativeHits).toBe(2)
  })

  it('mget answers undefined (not null) for a cached absence, like get', async () => {
    const { cache } = memoryStack({ ttl: 10_000, negativeTtl: 500 })
    await cache.getOrSet('k', () => undefined)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.mget(['k'])).toEqual([undefined])
  })

  it('caches null for negativeTtl and answers null', async () => {
    const { l1, cache } = memoryStack({ ttl: 10_000, negativeTtl: 500 })
    const loader = vi.fn((): string | null => null)
    expect(await cache.getOrSet('k', loader)).toBeNull()
    expect(l1.get('k')?.expiresAt).toBe(T0 + 500)
    expect(await cache.getOrSet('k', loader)).toBeNull()
    expect(await cache.get('k')).toBeNull()
    expect(loader).toHaveBeenCalledTimes(1)
    clock.advance(501)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a per-call negativeTtl applies to that call', async () => {
    const { l1, cache } = memoryStack({ ttl: 10_000 })
    await cache.getOrSet('k', () => undefined, { negativeTtl: 300 })
    expect(l1.get('k')).toMatchObject({ absent: true, expiresAt: T0 + 300 })
  })

  it('without negativeTtl undefined is not cached (uncached) and null is cached for the normal TTL', async () => {
    const { l1, cache } = memoryStack({ ttl: 10_000 })
    const undef = vi.fn((): string | undefined => undefined)
    expect(await cache.getOrSet('u', undef)).toBeUndefined()
    expect(await cache.getOrSet('u', undef)).toBeUndefined()
    expect(undef).toHaveBeenCalledTimes(2)
    expect(l1.get('u')).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ uncached: 2, negativeHits: 0 })
    const nul = vi.fn((): string | null => null)
    expect(await cache.getOrSet('n', nul)).toBeNull()
    expect(await cache.getOrSet('n', nul)).toBeNull()
    expect(nul).toHaveBeenCalledTimes(1)
    expect(l1.get('n')?.expiresAt).toBe(T0 + 10_000)
  })
})

describe('shouldCache and loader-adjusted writes', () => {
  it('shouldCache false returns the value without caching it', async () => {
    const shouldCache = vi.fn((value: unknown) => (value as { ok: boolean }).ok)
    const { l1, cache } = memoryStack({ ttl: 1000, shouldCache })
    const loader = vi.fn(() => ({ ok: false }))
    expect(await cache.getOrSet('k', loader)).toEqual({ ok: false })
    expect(await cache.getOrSet('k', loader)).toEqual({ ok: false })
    expect(loader).toHaveBeenCalledTimes(2)
    expect(l1.get('k')).toBeUndefined()
    expect(cache.getStats().uncached).toBe(2)
    expect(shouldCache).toHaveBeenCalledWith({ ok: false })
    expect(await cache.getOrSet('k', () => ({ ok: true }))).toEqual({ ok: true })
    expect(l1.get('k')?.value).toEqual({ ok: true })
    // A per-call predicate overrides the stack's.
    expect(await cache.getOrSet('p', () => ({ ok: false }), { shouldCache: () => true })).toEqual({
      ok: false,
    })
    expect(l1.get('p')?.value).toEqual({ ok: false })
  })

  it('ctx.setTtl and ctx.setTags change what is written', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000 })
    await cache.getOrSet(
      'k',
      (ctx) => {
        ctx.setTtl(250)
        ctx.setTags(['user:1', 'team:2'])
        return 'v'
      },
      { tags: ['ignored'] },
    )
    expect(l1.get('k')).toMatchObject({ value: 'v', expiresAt: T0 + 250, tags: ['user:1', 'team:2'] })
    clock.advance(251)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('ctx.setTtl sets the fresh TTL and the stale window still follows it', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, staleWhileRevalidate: 2000 })
    await cache.getOrSet('k', (ctx) => {
      ctx.setTtl(100)
      return 'v'
    })
    expect(l1.get('k')).toMatchObject({ freshUntil: T0 + 100, expiresAt: T0 + 2100 })
  })

  it('ctx.setTtl without any default TTL makes the entry expire', async () => {
    const { l1, cache } = memoryStack()
    await cache.getOrSet('k', (ctx) => {
      ctx.setTtl(300)
      return 'v'
    })
    expect(l1.get('k')?.expiresAt).toBe(T0 + 300)
  })

  it('an invalid ctx.setTtl or ctx.setTags rejects the call and caches nothing', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000 })
    for (const ttl of [0, -1, 1.5, Number.NaN]) {
      await expect(
        cache.getOrSet('k', (ctx) => {
          ctx.setTtl(ttl)
          return 'v'
        }),
      ).rejects.toBeInstanceOf(InvalidTtlError)
    }
    await expect(
      cache.getOrSet('k', (ctx) => {
        ctx.setTags(['ok', ''])
        return 'v'
      }),
    ).rejects.toBeInstanceOf(InvalidOptionError)
    expect(l1.get('k')).toBeUndefined()
  })
})

describe('warm', () => {
  it('respects concurrency, reports progress and counts warmed keys', async () => {
    const { cache, seen } = memoryStack({ ttl: 10_000 })
    let active = 0
    let maxActive = 0
    const entries = Array.from({ length: 10 }, (_, i) => ({
      key: `w${i}`,
      loader: async () => {
        active++
        maxActive = Math.max(maxActive, active)
        await ticks(10)
        active--
        return i
      },
    }))
    const result = await cache.warm(entries, { concurrency: 3 })
    expect(maxActive).toBe(3)
    expect(result).toEqual({ total: 10, loaded: 10, failed: [] })
    expect(seen.warm.map((e) => [e.done, e.total])).toEqual(Array.from({ length: 10 }, (_, i) => [i + 1, 10]))
    expect(seen.warm.every((e) => e.error === undefined)).toBe(true)
    expect(seen.warm.map((e) => e.key).sort()).toEqual(entries.map((e) => e.key).sort())
    expect(cache.getStats().warmed).toBe(10)
    for (let i = 0; i < 10; i++) expect(await cache.get(`w${i}`)).toBe(i)
  })

  it('concurrency 1 runs loaders one at a time, in order', async () => {
    const { cache } = memoryStack({ ttl: 10_000 })
    const order: string[] = []
    let active = 0
    let maxActive = 0
    const loader = (key: string) => async () => {
      active++
      maxActive = Math.max(maxActive, active)
      order.push(key)
      await ticks(3)
      active--
      return key
    }
    await cache.warm(
      ['a', 'b', 'c'].map((key) => ({ key, loader: loader(key) })),
      { concurrency: 1 },
    )
    expect(maxActive).toBe(1)
    expect(order).toEqual(['a', 'b', 'c'])
  })

  it('reports failures in the result and in events without rejecting', async () => {
    const { cache, seen } = memoryStack({ ttl: 10_000 })
    const boom = new Error('boom')
    const result = await cache.warm([
      { key: 'ok', loader: () => 1 },
      {
        key: 'bad',
        loader: () => {
          throw boom
        },
      },
      { key: 'ok2', loader: async () => 2 },
    ])
    expect(result).toEqual({ total: 3, loaded: 3, failed: [{ key: 'bad', error: boom }] })
    expect(seen.warm.find((e) => e.key === 'bad')?.error).toBe(boom)
    expect(await cache.get('ok')).toBe(1)
    expect(await cache.get('ok2')).toBe(2)
    expect(await cache.get('bad')).toBeUndefined()
  })

  it('skips keys already cached unless force', async () => {
    const { cache } = memoryStack({ ttl: 10_000 })
    await cache.set('a', 'old')
    const loadA = vi.fn(() => 'new a')
    const loadB = vi.fn(() => 'new b')
    const entries = [
      { key: 'a', loader: loadA },
      { key: 'b', loader: loadB },
    ]
    expect(await cache.warm(entries)).toEqual({ total: 2, loaded: 1, failed: [] })
    expect(loadA).not.toHaveBeenCalled()
    expect(await cache.get('a')).toBe('old')
    expect(cache.getStats().warmed).toBe(1)
    expect(await cache.warm(entries, { force: true })).toEqual({ total: 2, loaded: 2, failed: [] })
    expect(loadA).toHaveBeenCalledTimes(1)
    expect(loadB).toHaveBeenCalledTimes(2)
    expect(await cache.get('a')).toBe('new a')
    expect(cache.getStats().warmed).toBe(3)
  })

  it('refuses bad input before running any loader', async () => {
    const { cache } = memoryStack({ ttl: 10_000 })
    const loader = vi.fn(() => 1)
    const good = { key: 'g', loader }
    await expect(cache.warm([good], { concurrency: 0 })).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.warm([good], { concurrency: 1.5 })).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(
      cache.warm([good, { key: 'x', loader, options: { refreshAhead: 2 } }]),
    ).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.warm([good, { key: 'y', loader: 'nope' as never }])).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(loader).not.toHaveBeenCalled()
    expect(await cache.get('g')).toBeUndefined()
  })
})

describe('refresh', () => {
  it('always calls the loader and overwrites a fresh value', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, staleWhileRevalidate: 1000 })
    await cache.set('k', 'old')
    let n = 0
    const loader = vi.fn(() => `v${++n}`)
    expect(await cache.refresh('k', loader)).toBe('v1')
    expect(await cache.refresh('k', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(2)
    expect(l1.get('k')?.value).toBe('v2')
    expect(await cache.getOrSet('k', loader)).toBe('v2')
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('writes to every layer without reading the lower ones first', async () => {
    const { remote, cache } = twoLayerStack({ ttl: 1000 })
    await cache.set('k', 'old')
    const reads = vi.spyOn(remote, 'get')
    expect(await cache.refresh('k', () => 'new')).toBe('new')
    await flush()
    expect(reads).not.toHaveBeenCalled()
    expect(remote.store.get('k')?.value).toBe('new')
  })
})

const BAD_OPTIONS: [string, GetOrSetOptions, new (...args: never[]) => LayerCacheError][] = [
  ['negative staleWhileRevalidate', { staleWhileRevalidate: -1 }, InvalidTtlError],
  ['fractional staleIfError', { staleIfError: 1.5 }, InvalidTtlError],
  ['zero errorRetryAfter', { errorRetryAfter: 0 }, InvalidTtlError],
  ['negative softTimeout', { softTimeout: -5 }, InvalidTtlError],
  ['NaN hardTimeout', { hardTimeout: Number.NaN }, InvalidTtlError],
  ['zero negativeTtl', { negativeTtl: 0 }, InvalidTtlError],
  ['refreshAhead 1', { refreshAhead: 1 }, InvalidOptionError],
  ['refreshAhead 0', { refreshAhead: 0 }, InvalidOptionError],
  ['refreshAhead 1.5', { refreshAhead: 1.5 }, InvalidOptionError],
  ['refreshAhead NaN', { refreshAhead: Number.NaN }, InvalidOptionError],
  ['refreshAhead as a string', { refreshAhead: '0.5' as never }, InvalidOptionError],
  ['jitter 1', { jitter: 1 }, InvalidOptionError],
  ['negative jitter', { jitter: -0.1 }, InvalidOptionError],
  ['softTimeout equal to hardTimeout', { softTimeout: 200, hardTimeout: 200 }, InvalidOptionError],
  ['softTimeout above hardTimeout', { softTimeout: 300, hardTimeout: 200 }, InvalidOptionError],
  ['shouldCache not a function', { shouldCache: 'yes' as never }, InvalidOptionError],
  ['earlyExpiration 0', { earlyExpiration: 0 }, InvalidOptionError],
  ['negative earlyExpiration', { earlyExpiration: -1 }, InvalidOptionError],
  ['earlyExpiration Infinity', { earlyExpiration: Infinity }, InvalidOptionError],
]

describe('bad freshness options', () => {
  it.each(BAD_OPTIONS)('refuses %s on the stack and per call, and nothing changes', async (_l, bad, type) => {
    expect(() => new CacheStack([new MemoryLayer()], bad as CacheStackOptions)).toThrow(type)
    const { l1, cache } = memoryStack({ ttl: 1000 })
    await cache.set('k', { kept: true })
    const before = l1.get('k')!
    const loader = vi.fn(() => 'loaded')
    const calls: [string, () => Promise<unknown>][] = [
      ['getOrSet on a cached key', () => cache.getOrSet('k', loader, bad)],
      ['getOrSet on a missing key', () => cache.getOrSet('m', loader, bad)],
      ['refresh', () => cache.refresh('k', loader, bad)],
      ['warm', () => cache.warm([{ key: 'm', loader, options: bad }])],
    ]
    for (const [name, call] of calls) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error, name).toBeInstanceOf(type)
    }
    expect(loader).not.toHaveBeenCalled()
    // Rewritten, the entry would hold another copy of the value (and a later expiry).
    expect(l1.get('k')).toEqual(before)
    expect(l1.get('k')?.value).toBe(before.value)
    expect(l1.get('m')).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ loaderCalls: 0, sets: 1 })
  })

  it('checks softTimeout against a hardTimeout inherited from the stack', async () => {
    const { cache } = memoryStack({ ttl: 1000, hardTimeout: 100 })
    await expect(cache.getOrSet('k', () => 1, { softTimeout: 100 })).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(await cache.getOrSet('k', () => 1, { softTimeout: 99 })).toBe(1)
  })

  it('accepts the edges: jitter 0, refreshAhead just inside (0, 1), 1 ms windows', async () => {
    const options = {
      ttl: 1000,
      jitter: 0,
      refreshAhead: 0.999,
      staleWhileRevalidate: 1,
      staleIfError: 1,
      errorRetryAfter: 1,
      softTimeout: 1,
      hardTimeout: 2,
      negativeTtl: 1,
      earlyExpiration: 0.001,
    }
    const { cache } = memoryStack(options)
    expect(await cache.getOrSet('k', () => 'ok', { refreshAhead: 0.001 })).toBe('ok')
  })

  it('wrap refuses invalid freshness options when wrapping, like an invalid ttl', () => {
    const { cache } = memoryStack({ ttl: 1000 })
    const fn = vi.fn(() => 1)
    expect(() => cache.wrap('w', fn, { ttl: 0 })).toThrow(InvalidTtlError)
    expect(() => cache.wrap('w', fn, { refreshAhead: 2 })).toThrow(InvalidOptionError)
    expect(() => cache.wrap('w', fn, { staleWhileRevalidate: -1 })).toThrow(InvalidTtlError)
  })
})

describe('no resurrection with freshness', () => {
  it('a delete during a background refresh keeps its value out of every layer', async () => {
    const { l1, remote, cache, seen } = twoLayerStack({ ttl: 1000, staleWhileRevalidate: 5000 })
    await cache.getOrSet('k', () => 'v1')
    await flush()
    clock.advance(1500)
    const { loader, finish } = gatedLoader<string>()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    expect(loader).toHaveBeenCalledTimes(1)
    const writes = remote.writes
    await cache.delete('k')
    finish('refreshed before the delete')
    await flush()
    expect(l1.get('k')).toBeUndefined()
    expect(remote.store.get('k')).toBeUndefined()
    expect(remote.writes).toBe(writes)
    expect(seen.fenced).toEqual([{ key: 'k' }])
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a set during a background refresh wins over it', async () => {
    const { l1, cache } = memoryStack({ ttl: 1000, refreshAhead: 0.5 })
    await cache.getOrSet('k', () => 'v1')
    clock.advance(600)
    const { loader, finish } = gatedLoader<string>()
    expect(await cache.getOrSet('k', loader)).toBe('v1')
    await flush()
    await cache.set('k', 'written')
    finish('refreshed')
    await flush()
    expect(l1.get('k')?.value).toBe('written')
  })

  it('a delete while a soft-timed-out loader runs on keeps its value out', async () => {
    const { l1, remote, cache } = twoLayerStack({ ttl: 1000, staleIfError: 10_000, softTimeout: 50 })
    await cache.getOrSet('k', () => 'v1')
    await flush()
    clock.advance(1500)
    const { loader, finish } = gatedLoader<string>()
    const pending = track(cache.getOrSet('k', loader))
    await flush()
    clock.advance(50)
    await flush()
    expect(pending.value).toBe('v1')
    await cache.delete('k')
    finish('late')
    await flush()
    expect(l1.get('k')).toBeUndefined()
    expect(remote.store.get('k')).toBeUndefined()
    expect(cache.getStats().fencedWrites).toBe(1)
    // The next call loads afresh instead of joining the fenced flight.
    expect(await cache.getOrSet('k', () => 'after')).toBe('after')
  })
})
