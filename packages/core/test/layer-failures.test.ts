import {
  type CacheEventMap,
  CacheStack,
  type CacheStackOptions,
  LayerCacheError,
  LayerUnavailableError,
} from '@layercache/core'
import { describe, expect, it, vi } from 'vitest'
import { flush, MemoryLayer, RemoteLayer } from './support/remote-layer'

function twoLayers(options: CacheStackOptions = {}) {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote], options)
  const errors: CacheEventMap['error'][] = []
  cache.on('error', (e) => errors.push(e))
  return { l1, remote, cache, errors }
}

async function rejection(promise: Promise<unknown>): Promise<LayerUnavailableError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(LayerUnavailableError)
  expect(error).toBeInstanceOf(LayerCacheError)
  return error as LayerUnavailableError
}

describe("onLayerError 'throw' (default)", () => {
  it('get rejects with LayerUnavailableError on an L1 miss while L1 hits still answer', async () => {
    const { remote, cache, errors } = twoLayers()
    await cache.set('hot', 'v')
    remote.fail()
    const error = await rejection(cache.get('cold'))
    expect(error).toMatchObject({ code: 'LAYER_UNAVAILABLE', layer: 'remote' })
    const calls = remote.totalCalls
    expect(await cache.get('hot')).toBe('v')
    expect(await cache.getOrSet('hot', () => 'loaded')).toBe('v')
    expect(await cache.has('hot')).toBe(true)
    expect(await cache.mget(['hot'])).toEqual(['v'])
    expect(remote.totalCalls).toBe(calls)
    expect(errors).toEqual([{ operation: 'get', layer: 'remote', key: 'cold', error, handled: false }])
  })

  it('getOrSet rejects without running the loader', async () => {
    const { remote, cache } = twoLayers()
    remote.fail(['get'])
    const loader = vi.fn(() => 'loaded')
    await rejection(cache.getOrSet('k', loader))
    expect(loader).not.toHaveBeenCalled()
    // The failed flight is forgotten: once the layer is back, the key loads normally.
    remote.recover()
    expect(await cache.getOrSet('k', loader)).toBe('loaded')
  })

  it('every waiter of a coalesced getOrSet gets the failure', async () => {
    const { remote, cache } = twoLayers()
    remote.fail(['get'])
    const settled = await Promise.allSettled(Array.from({ length: 5 }, () => cache.getOrSet('k', () => 1)))
    expect(settled.every((s) => s.status === 'rejected' && s.reason instanceof LayerUnavailableError)).toBe(
      true,
    )
    expect(remote.calls.get).toBe(1)
  })

  it('mget and has reject when they need the failed layer', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('a', 1)
    remote.fail()
    await rejection(cache.mget(['a', 'b']))
    await rejection(cache.has('b'))
  })

  it('wraps a plain error from a layer in LayerUnavailableError that names the layer and keeps the cause', async () => {
    const { remote, cache } = twoLayers()
    const cause = new Error('ECONNRESET')
    remote.fail(['get'], () => cause)
    const error = await rejection(cache.get('k'))
    expect(error.layer).toBe('remote')
    expect(error.cause).toBe(cause)
    expect(error.message).toContain('ECONNRESET')
  })

  it('set rejects and leaves no new value in L1; the old value is still served once the layer is back', async () => {
    const { l1, remote, cache, errors } = twoLayers()
    await cache.set('k', 'old')
    remote.fail()
    await rejection(cache.set('k', 'new'))
    expect(l1.get('k')?.value).toBeUndefined()
    expect(remote.peek('k')).toBe('old')
    expect(errors.map((e) => [e.operation, e.handled])).toEqual([['set', false]])
    remote.recover()
    expect(await cache.get('k')).toBe('old')
  })

  it('set whose remote write alone fails leaves the new value in no layer', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('k', 'old')
    remote.fail(['write'])
    await rejection(cache.set('k', 'new'))
    expect(l1.get('k')?.value).not.toBe('new')
    expect(remote.peek('k')).not.toBe('new')
    remote.recover()
    expect(await cache.get('k')).not.toBe('new')
  })

  it('mset rejects and leaves none of its entries in L1', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.fail(['write'])
    await rejection(
      cache.mset([
        { key: 'a', value: 1 },
        { key: 'b', value: 2 },
      ]),
    )
    expect(l1.has('a')).toBe(false)
    expect(l1.has('b')).toBe(false)
    expect(remote.size).toBe(0)
  })

  it('recovers as soon as the layer does', async () => {
    const { remote, cache } = twoLayers()
    remote.seed('k', 'v')
    remote.fail()
    await rejection(cache.get('k'))
    remote.recover()
    expect(await cache.get('k')).toBe('v')
  })
})

describe("onLayerError 'bypass'", () => {
  it('get treats the failed layer as a miss', async () => {
    const { remote, cache, errors } = twoLayers({ onLayerError: 'bypass' })
    remote.seed('k', 'unreachable')
    remote.fail()
    expect(await cache.get('k')).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ misses: 1, errors: 1 })
    expect(errors).toMatchObject([{ operation: 'get', layer: 'remote', key: 'k', handled: true }])
    expect(errors[0]?.error).toBeInstanceOf(LayerUnavailableError)
  })

  it('getOrSet runs the loader and the value lands in L1', async () => {
    const { l1, remote, cache, errors } = twoLayers({ onLayerError: 'bypass' })
    remote.fail()
    const loader = vi.fn(() => ({ fresh: true }))
    expect(await cache.getOrSet('k', loader)).toEqual({ fresh: true })
    expect(loader).toHaveBeenCalledTimes(1)
    expect(l1.get('k')?.value).toEqual({ fresh: true })
    expect(errors.map((e) => [e.operation, e.handled])).toEqual([
      ['get', true],
      ['set', true],
    ])
    // Served from L1 from now on.
    expect(await cache.getOrSet('k', loader)).toEqual({ fresh: true })
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('mget and has answer from the layers that work', async () => {
    const { remote, cache } = twoLayers({ onLayerError: 'bypass' })
    await cache.set('a', 1)
    remote.fail()
    expect(await cache.mget(['a', 'b'])).toEqual([1, undefined])
    expect(await cache.has('a')).toBe(true)
    expect(await cache.has('b')).toBe(false)
  })

  it('set keeps the value in L1 and reports the failure as handled', async () => {
    const { l1, remote, cache, errors } = twoLayers({ onLayerError: 'bypass' })
    remote.fail(['write'])
    await cache.set('k', 'v')
    expect(l1.get('k')?.value).toBe('v')
    expect(remote.hasKey('k')).toBe(false)
    expect(errors.map((e) => [e.operation, e.handled])).toEqual([['set', true]])
  })
})

describe('per-call onLayerError', () => {
  it("'bypass' on a call overrides a 'throw' stack", async () => {
    const { l1, remote, cache } = twoLayers()
    remote.fail()
    expect(await cache.get('k', { onLayerError: 'bypass' })).toBeUndefined()
    expect(await cache.mget(['k'], { onLayerError: 'bypass' })).toEqual([undefined])
    expect(await cache.has('k', { onLayerError: 'bypass' })).toBe(false)
    expect(await cache.getOrSet('k', () => 'loaded', { onLayerError: 'bypass' })).toBe('loaded')
    expect(l1.get('k')?.value).toBe('loaded')
    await rejection(cache.get('other'))
  })

  it("'throw' on a call overrides a 'bypass' stack", async () => {
    const { remote, cache } = twoLayers({ onLayerError: 'bypass' })
    remote.fail()
    await rejection(cache.get('k', { onLayerError: 'throw' }))
    await rejection(cache.getOrSet('k', () => 1, { onLayerError: 'throw' }))
    await rejection(cache.mget(['k'], { onLayerError: 'throw' }))
    expect(await cache.get('k')).toBeUndefined()
  })
})

describe('delete when a layer fails', () => {
  it('rejects even in bypass mode, yet has removed the key from L1', async () => {
    for (const onLayerError of ['throw', 'bypass'] as const) {
      const { l1, remote, cache, errors } = twoLayers({ onLayerError })
      const deletes: CacheEventMap['delete'][] = []
      cache.on('delete', (e) => deletes.push(e))
      await cache.set('k', 'v')
      remote.fail(['delete', 'deleteMany'])
      const error = await rejection(cache.delete('k'))
      expect(error.layer).toBe('remote')
      expect(l1.has('k')).toBe(false)
      expect(errors).toMatchObject([{ operation: 'delete', layer: 'remote', key: 'k', handled: false }])
      // Not reported as done.
      expect(deletes).toEqual([])
      await rejection(cache.mdelete(['k', 'j']))
    }
  })

  it('a failed delete still fences a load in flight for the key', async () => {
    const { l1, remote, cache } = twoLayers()
    let release!: (value: string) => void
    const pending = cache.getOrSet('k', () => new Promise<string>((resolve) => (release = resolve)))
    await flush()
    remote.fail(['delete'])
    await rejection(cache.delete('k'))
    remote.recover()
    release('stale')
    await pending
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
  })
})

describe('error accounting', () => {
  it('counts errors in total and per layer', async () => {
    const { remote, cache } = twoLayers({ onLayerError: 'bypass' })
    remote.fail()
    await cache.get('a')
    await cache.mget(['a', 'b'])
    await cache.set('c', 1)
    await cache.delete('d').catch(() => undefined)
    const stats = cache.getStats()
    expect(stats.errors).toBe(4)
    expect(stats.layers.map((l) => [l.name, l.errors])).toEqual([
      ['memory', 0],
      ['remote', 4],
    ])
    cache.resetStats()
    expect(cache.getStats().errors).toBe(0)
    expect(cache.getStats().layers[1]?.errors).toBe(0)
  })

  it('a failing back-fill into a slower upper layer is handled and does not fail the read', async () => {
    const l1 = new MemoryLayer()
    const l2 = new RemoteLayer({ name: 'l2' })
    const l3 = new RemoteLayer({ name: 'l3' })
    const cache = new CacheStack([l1, l2, l3])
    const errors: CacheEventMap['error'][] = []
    cache.on('error', (e) => errors.push(e))
    l3.seed('k', 'v')
    l2.fail(['write'])
    expect(await cache.get('k')).toBe('v')
    await flush()
    expect(l1.get('k')?.value).toBe('v')
    expect(errors).toMatchObject([{ operation: 'backfill', layer: 'l2', key: 'k', handled: true }])
    expect(cache.getStats().layers.map((l) => l.errors)).toEqual([0, 1, 0])
  })
})
