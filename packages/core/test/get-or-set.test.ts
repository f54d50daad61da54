import { CacheStack, type CacheStackOptions, InvalidKeyError, InvalidOptionError } from '@layercache/core'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer, ticks, useFakeClock } from './support/remote-layer'

function twoLayers(options: CacheStackOptions = {}) {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote], options)
  return { l1, remote, cache }
}

describe('getOrSet', () => {
  it('runs the loader once for 100 concurrent misses and gives every caller the same value', async () => {
    const { l1, remote, cache } = twoLayers()
    const gate = deferred<{ id: number }>()
    const loader = vi.fn(() => gate.promise)
    const calls = Array.from({ length: 100 }, () => cache.getOrSet('hot', loader))
    await ticks(20)
    gate.resolve({ id: 7 })
    const results = await Promise.all(calls)
    expect(loader).toHaveBeenCalledTimes(1)
    for (const result of results) expect(result).toEqual({ id: 7 })
    // Every waiter gets the same object: what L1 now holds.
    expect(new Set(results).size).toBe(1)
    expect(results[0]).toBe(l1.get('hot')?.value)
    expect(remote.peek('hot')).toEqual({ id: 7 })
    expect(remote.calls.get).toBe(1)
    expect(cache.getStats()).toMatchObject({ loaderCalls: 1, coalesced: 99, misses: 1 })
  })

  it('serves a cached value without calling the loader', async () => {
    const { cache } = twoLayers()
    await cache.set('k', 'cached')
    const loader = vi.fn(() => 'loaded')
    expect(await cache.getOrSet('k', loader)).toBe('cached')
    expect(loader).not.toHaveBeenCalled()
  })

  it('serves a remote hit without calling the loader and back-fills L1', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', 'remote value')
    const loader = vi.fn(() => 'loaded')
    expect(await cache.getOrSet('k', loader)).toBe('remote value')
    expect(loader).not.toHaveBeenCalled()
    expect(l1.get('k')?.value).toBe('remote value')
  })

  it('caches the loaded value in every layer so the next call is an L1 hit', async () => {
    const { l1, remote, cache } = twoLayers()
    const loader = vi.fn(async () => ({ n: 1 }))
    expect(await cache.getOrSet('k', loader)).toEqual({ n: 1 })
    expect(l1.get('k')?.value).toEqual({ n: 1 })
    expect(remote.peek('k')).toEqual({ n: 1 })
    const remoteGets = remote.calls.get
    expect(await cache.getOrSet('k', loader)).toEqual({ n: 1 })
    expect(loader).toHaveBeenCalledTimes(1)
    expect(remote.calls.get).toBe(remoteGets)
  })

  it('runs loaders of different keys independently', async () => {
    const { cache } = twoLayers()
    const a = deferred<string>()
    const b = deferred<string>()
    const pa = cache.getOrSet('a', () => a.promise)
    const pb = cache.getOrSet('b', () => b.promise)
    b.resolve('B')
    expect(await pb).toBe('B')
    a.resolve('A')
    expect(await pa).toBe('A')
    expect(cache.getStats()).toMatchObject({ loaderCalls: 2, coalesced: 0 })
  })

  it('delivers a loader error to every waiter, caches nothing, and lets the next call retry', async () => {
    const { l1, remote, cache } = twoLayers()
    const gate = deferred<string>()
    const failure = new Error('database down')
    const loader = vi.fn(() => gate.promise)
    const calls = Array.from({ length: 10 }, () => cache.getOrSet('k', loader))
    await ticks(20)
    gate.reject(failure)
    const settled = await Promise.allSettled(calls)
    expect(loader).toHaveBeenCalledTimes(1)
    for (const result of settled) expect(result).toEqual({ status: 'rejected', reason: failure })
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(remote.calls.write).toBe(0)
    expect(cache.getStats()).toMatchObject({ loaderCalls: 1, loaderErrors: 1 })

    expect(await cache.getOrSet('k', () => 'recovered')).toBe('recovered')
    expect(remote.peek('k')).toBe('recovered')
  })

  it('answers a bad key or loader with a rejection, never a synchronous throw, cached key or not', async () => {
    const { cache } = twoLayers()
    await cache.set('k', 'cached')
    const calls: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
      ['get, a number key', () => cache.get(1 as never), InvalidKeyError],
      ['get, a control character', () => cache.get('bad\nkey'), InvalidKeyError],
      ['get, an empty key', () => cache.get(''), InvalidKeyError],
      ['getOrSet, a number key', () => cache.getOrSet(1 as never, () => 1), InvalidKeyError],
      ['getOrSet, a control character', () => cache.getOrSet('bad\nkey', () => 1), InvalidKeyError],
      [
        'getOrSet, no loader on a cached key',
        () => cache.getOrSet('k', undefined as never),
        InvalidOptionError,
      ],
      ['getOrSet, no loader on a missing key', () => cache.getOrSet('m', 'x' as never), InvalidOptionError],
    ]
    for (const [name, call, type] of calls) {
      let promise: Promise<unknown> | undefined
      expect(() => {
        promise = call()
      }, name).not.toThrow()
      await expect(promise, name).rejects.toBeInstanceOf(type)
    }
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('cached')
  })

  it('turns a synchronously throwing loader into a rejection, not a synchronous throw', async () => {
    const { cache } = twoLayers()
    const failure = new Error('sync boom')
    let promise: Promise<unknown> | undefined
    expect(() => {
      promise = cache.getOrSet('k', () => {
        throw failure
      })
    }).not.toThrow()
    await expect(promise).rejects.toBe(failure)
    expect(await cache.has('k')).toBe(false)
  })

  it('returns undefined from the loader without caching it', async () => {
    const { l1, remote, cache } = twoLayers()
    const loader = vi.fn(() => undefined)
    expect(await cache.getOrSet('k', loader)).toBeUndefined()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(await cache.getOrSet('k', loader)).toBeUndefined()
    expect(loader).toHaveBeenCalledTimes(2)
  })

  it('caches null from the loader', async () => {
    const { l1, remote, cache } = twoLayers()
    const loader = vi.fn(async () => null)
    expect(await cache.getOrSet('k', loader)).toBeNull()
    expect(await cache.getOrSet('k', loader)).toBeNull()
    expect(loader).toHaveBeenCalledTimes(1)
    expect(l1.get('k')).toMatchObject({ value: null })
    expect(remote.hasKey('k')).toBe(true)
    expect(await cache.get('k')).toBeNull()
  })

  it('accepts synchronous loaders', async () => {
    const { remote, cache } = twoLayers()
    expect(await cache.getOrSet('n', () => 42)).toBe(42)
    expect(await cache.getOrSet('s', () => 'text')).toBe('text')
    expect(await cache.getOrSet('z', () => 0)).toBe(0)
    expect([remote.peek('n'), remote.peek('s'), remote.peek('z')]).toEqual([42, 'text', 0])
  })

  it('coalesces with a flight already running even when the second call passes another loader', async () => {
    const { cache } = twoLayers()
    const gate = deferred<string>()
    const first = cache.getOrSet('k', () => gate.promise)
    const second = vi.fn(() => 'second')
    const joined = cache.getOrSet('k', second)
    gate.resolve('first')
    expect(await Promise.all([first, joined])).toEqual(['first', 'first'])
    expect(second).not.toHaveBeenCalled()
  })

  it('starts a new load once the previous flight has finished', async () => {
    const { cache } = twoLayers()
    let n = 0
    const loader = () => ++n
    expect(await cache.getOrSet('k', loader)).toBe(1)
    await cache.delete('k')
    expect(await cache.getOrSet('k', loader)).toBe(2)
  })

  describe('ttl and tags', () => {
    let clock: ReturnType<typeof useFakeClock> | undefined
    afterEach(() => {
      clock?.restore()
      clock = undefined
    })

    it('stores the loaded value with the given ttl and tags', async () => {
      clock = useFakeClock()
      const { l1, remote, cache } = twoLayers({ ttl: 60_000 })
      await cache.getOrSet('k', () => 'v', { ttl: 300, tags: ['t1', 't2'] })
      expect(remote.expiresAt('k')).toBe(Date.now() + 300)
      expect(l1.get('k')).toMatchObject({ value: 'v', tags: ['t1', 't2'] })
      clock.advance(301)
      const loader = vi.fn(() => 'again')
      expect(await cache.getOrSet('k', loader)).toBe('again')
      expect(loader).toHaveBeenCalledTimes(1)
    })
  })
})

describe('wrap', () => {
  it('caches results per argument list', async () => {
    const { cache } = twoLayers()
    const fn = vi.fn(async (a: number, b: string) => `${a}-${b}`)
    const wrapped = cache.wrap('fn', fn)
    expect(await wrapped(1, 'x')).toBe('1-x')
    expect(await wrapped(1, 'x')).toBe('1-x')
    expect(await wrapped(2, 'x')).toBe('2-x')
    expect(await wrapped(1, 'y')).toBe('1-y')
    expect(fn).toHaveBeenCalledTimes(3)
    expect(fn).toHaveBeenNthCalledWith(2, 2, 'x')
  })

  it('keys entries as prefix + ":" + JSON of the arguments by default', async () => {
    const { l1, remote, cache } = twoLayers()
    const wrapped = cache.wrap('user', (id: number) => ({ id }))
    await wrapped(5)
    expect(l1.get('user:[5]')?.value).toEqual({ id: 5 })
    expect(remote.peek('user:[5]')).toEqual({ id: 5 })
  })

  it('uses keyResolver to build the key', async () => {
    const { l1, cache } = twoLayers()
    const fn = vi.fn((user: { id: number; name: string }) => user.name.toUpperCase())
    const wrapped = cache.wrap('upper', fn, { keyResolver: (user) => String(user.id) })
    expect(await wrapped({ id: 1, name: 'ada' })).toBe('ADA')
    // Same id, different name: the resolver says it is the same entry.
    expect(await wrapped({ id: 1, name: 'grace' })).toBe('ADA')
    expect(fn).toHaveBeenCalledTimes(1)
    expect(l1.get('upper:1')?.value).toBe('ADA')
  })

  it('single-flights concurrent calls with the same arguments', async () => {
    const { cache } = twoLayers()
    const gate = deferred<string>()
    const fn = vi.fn((_id: number) => gate.promise)
    const wrapped = cache.wrap('slow', fn)
    const calls = Array.from({ length: 20 }, () => wrapped(1))
    const other = wrapped(2)
    await ticks(10)
    gate.resolve('done')
    expect(new Set(await Promise.all(calls))).toEqual(new Set(['done']))
    expect(await other).toBe('done')
    expect(fn).toHaveBeenCalledTimes(2)
    expect(cache.getStats().coalesced).toBe(19)
  })

  it('passes ttl and tags through to the cached entry', async () => {
    const { l1, remote, cache } = twoLayers()
    const wrapped = cache.wrap('t', () => 'v', { ttl: 5000, tags: ['tag'] })
    const before = Date.now()
    await wrapped()
    const expiresAt = remote.expiresAt('t:[]') ?? 0
    expect(expiresAt).toBeGreaterThanOrEqual(before + 5000)
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 5000)
    expect(l1.get('t:[]')?.tags).toEqual(['tag'])
  })

  it('validates its arguments when wrapping', () => {
    const { cache } = twoLayers()
    expect(() => cache.wrap('', () => 1)).toThrow(InvalidKeyError)
    expect(() => cache.wrap('p', 'nope' as never)).toThrow(InvalidOptionError)
    expect(() => cache.wrap('p', () => 1, { ttl_ms: 5 } as never)).toThrow(InvalidOptionError)
    expect(() => cache.wrap('p', () => 1, { keyResolver: 'x' } as never)).toThrow(InvalidOptionError)
    expect(() => cache.wrap('p', () => 1, { ttl: -1 })).toThrow(
      expect.objectContaining({ code: 'INVALID_TTL' }),
    )
    expect(() => cache.wrap('p', () => 1, { tags: 'x' } as never)).toThrow(InvalidOptionError)
  })

  it('rejects an invalid onLayerError when wrapping, like the other options', () => {
    const { cache } = twoLayers()
    expect(() => cache.wrap('p', () => 1, { onLayerError: 'ignore' } as never)).toThrow(InvalidOptionError)
  })

  it('reports a throwing keyResolver as a rejected promise, not a synchronous throw', async () => {
    const { cache } = twoLayers()
    const failure = new Error('resolver bug')
    const wrapped = cache.wrap('p', (n: number) => n, {
      keyResolver: () => {
        throw failure
      },
    })
    let promise: Promise<number> | undefined
    expect(() => {
      promise = wrapped(1)
    }).not.toThrow()
    await expect(promise).rejects.toBe(failure)
  })

  it('rejects with InvalidKeyError when the arguments make an invalid key', async () => {
    const { cache } = twoLayers()
    const fn = vi.fn((s: string) => s)
    const wrapped = cache.wrap('p', fn, { keyResolver: (s) => s })
    await expect(wrapped('bad\nkey')).rejects.toBeInstanceOf(InvalidKeyError)
    expect(fn).not.toHaveBeenCalled()
  })
})
