import {
  type BatchLoaderContext,
  CacheStack,
  InvalidKeyError,
  InvalidOptionError,
  InvalidValueError,
} from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { deferred, flush, MemoryLayer, RemoteLayer } from './support/remote-layer'

/** A batch loader that records its calls and answers `value(key)`, when told to if `held`. */
function recording(value = (key: string) => `v:${key}`, held = false) {
  const calls: string[][] = []
  const release = deferred()
  const called = deferred()
  const loader = async (keys: readonly string[], _context: BatchLoaderContext) => {
    calls.push([...keys])
    called.resolve()
    if (held) await release.promise
    return keys.map(value)
  }
  return { loader, calls, release: () => release.resolve(), called: called.promise }
}

function stack() {
  const remote = new RemoteLayer()
  return { remote, cache: new CacheStack([new MemoryLayer(), remote]) }
}

describe('getOrSetMany', () => {
  it('calls the loader once with exactly the keys no layer has, and answers in key order', async () => {
    const { cache, remote } = stack()
    await cache.set('a', 'cached a')
    await cache.set('b', 'cached b')
    cache.layers[0]!.delete('b') // b is in Redis only
    const { loader, calls } = recording()
    const values = await cache.getOrSetMany(['c', 'a', 'b', 'd', 'c'], loader)
    expect(values).toEqual(['v:c', 'cached a', 'cached b', 'v:d', 'v:c'])
    expect(calls).toEqual([['c', 'd']])
    expect((await remote.get('d'))?.value).toBe('v:d')
    // All cached now: no call at all.
    expect(await cache.getOrSetMany(['a', 'b', 'c', 'd'], loader)).toEqual([
      'cached a',
      'cached b',
      'v:c',
      'v:d',
    ])
    expect(calls).toHaveLength(1)
  })

  it("hands the loader the missing keys in the caller's order, whatever order their reads finish in", async () => {
    // On a Cluster each key's read goes to its own node, so the reads finish in any order.
    const gate = deferred()
    class FirstKeySlow extends RemoteLayer {
      override async get(key: string) {
        if (key === 'k1') await gate.promise
        return super.get(key)
      }
    }
    const cache = new CacheStack([new MemoryLayer(), new FirstKeySlow()])
    const { loader, calls } = recording()
    const many = cache.getOrSetMany(['k1', 'k2', 'k3'], loader)
    await flush()
    gate.resolve()
    expect(await many).toEqual(['v:k1', 'v:k2', 'v:k3'])
    expect(calls).toEqual([['k1', 'k2', 'k3']])
  })

  it('a key already loading joins that load; a getOrSet made meanwhile joins the batch', async () => {
    const { cache } = stack()
    const single = deferred<string>()
    const inFlight = cache.getOrSet('a', () => single.promise)
    const { loader, calls, release, called } = recording((key) => `batch:${key}`, true)
    const many = cache.getOrSetMany(['a', 'b'], loader)
    await called
    expect(calls).toEqual([['b']])
    let ownCalls = 0
    const joining = cache.getOrSet('b', () => {
      ownCalls++
      return 'own'
    })
    release()
    single.resolve('single:a')
    expect(await many).toEqual(['single:a', 'batch:b'])
    expect(await inFlight).toBe('single:a')
    expect(await joining).toBe('batch:b')
    expect(ownCalls).toBe(0)
  })

  it('a key invalidated while the batch loads is not written back; the others are cached', async () => {
    const { cache, remote } = stack()
    const { loader, release, called } = recording((key) => `old:${key}`, true)
    const many = cache.getOrSetMany(['a', 'b'], loader, { tags: ['t'] })
    await called
    await cache.delete('a')
    release()
    expect(await many).toEqual(['old:a', 'old:b'])
    expect(await cache.get('a')).toBeUndefined()
    expect(await remote.get('a')).toBeUndefined()
    expect(await cache.get('b')).toBe('old:b')
    // A tag invalidation during a batch fences every key it covers.
    const again = recording((key) => `older:${key}`, true)
    const second = cache.getOrSetMany(['c', 'd'], again.loader, { tags: ['t'] })
    await again.called
    await cache.invalidateByTag('t')
    again.release()
    await second
    expect(await cache.mget(['b', 'c', 'd'])).toEqual([undefined, undefined, undefined])
  })

  it('lets the loader set each key’s TTL and tags', async () => {
    const { cache } = stack()
    await cache.getOrSetMany(['a', 'b'], async (keys, ctx) => {
      ctx.setTags('a', ['group'])
      ctx.setTtl('b', 60_000)
      return keys.map((key) => key.toUpperCase())
    })
    expect(await cache.invalidateByTag('group')).toBe(1)
    expect(await cache.mget(['a', 'b'])).toEqual([undefined, 'B'])
  })

  it('a loader failure rejects every key of the batch and caches nothing; a wrong answer length too', async () => {
    const { cache } = stack()
    await expect(
      cache.getOrSetMany(['a', 'b'], async () => {
        throw new Error('db down')
      }),
    ).rejects.toThrow('db down')
    await expect(cache.getOrSetMany(['a', 'b'], async () => ['only one'])).rejects.toBeInstanceOf(
      InvalidValueError,
    )
    expect(await cache.mget(['a', 'b'])).toEqual([undefined, undefined])
  })

  it('undefined from the loader is answered, not cached', async () => {
    const { cache } = stack()
    expect(await cache.getOrSetMany(['a', 'b'], async () => [undefined, 'b'])).toEqual([undefined, 'b'])
    expect(await cache.has('a')).toBe(false)
  })

  it('stops a caller whose signal aborts; the batch goes on for the others', async () => {
    const { cache } = stack()
    const { loader, release, called } = recording((key) => key, true)
    const controller = new AbortController()
    const leaving = cache.getOrSetMany(['a', 'b'], loader, { signal: controller.signal })
    await called
    const staying = cache.getOrSet('a', () => 'never')
    controller.abort()
    await expect(leaving).rejects.toMatchObject({ name: 'AbortError' })
    release()
    expect(await staying).toBe('a')
  })

  it('refuses bad input having loaded nothing', async () => {
    const { cache } = stack()
    const { loader, calls } = recording()
    await expect(cache.getOrSetMany('a' as never, loader)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.getOrSetMany(['a', ''], loader)).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(cache.getOrSetMany(['a'], 'nope' as never)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.getOrSetMany(['a'], loader, { ttl: -1 })).rejects.toThrow()
    expect(calls).toEqual([])
  })
})
