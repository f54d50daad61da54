import { type CacheEventMap, CacheStack } from '@layercache/core'
import { describe, expect, it, vi } from 'vitest'
import { deferred, flush, MemoryLayer, RemoteLayer } from './support/remote-layer'

function twoLayers() {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote])
  return { l1, remote, cache }
}

describe('namespaces', () => {
  it('isolate tenants that use the same key', async () => {
    const { l1, remote, cache } = twoLayers()
    const a = cache.namespace('tenantA')
    const b = cache.namespace('tenantB')
    await a.set('user:1', 'alice')
    await b.set('user:1', 'bob')
    await cache.set('user:1', 'root')
    expect(await a.get('user:1')).toBe('alice')
    expect(await b.get('user:1')).toBe('bob')
    expect(await cache.get('user:1')).toBe('root')
    expect(remote.keys().sort()).toEqual(['tenantA:user:1', 'tenantB:user:1', 'user:1'])
    expect([...l1.keys()].sort()).toEqual(['tenantA:user:1', 'tenantB:user:1', 'user:1'])
    await a.delete('user:1')
    expect(await a.get('user:1')).toBeUndefined()
    expect(await a.has('user:1')).toBe(false)
    expect(await b.get('user:1')).toBe('bob')
    expect(await cache.get('user:1')).toBe('root')
  })

  it('nest: namespace("a").namespace("b") stores under a:b:key', async () => {
    const { remote, cache } = twoLayers()
    const nested = cache.namespace('a').namespace('b')
    expect(nested.keyPrefix).toBe('a:b:')
    await nested.set('key', 1)
    expect(remote.keys()).toEqual(['a:b:key'])
    expect(await cache.get('a:b:key')).toBe(1)
    expect(await cache.namespace('a').get('b:key')).toBe(1)
    expect(await cache.namespace('a:b').get('key')).toBe(1)
  })

  it("normalise a trailing ':' so 'a' and 'a:' are the same namespace", async () => {
    const { remote, cache } = twoLayers()
    expect(cache.namespace('a').keyPrefix).toBe('a:')
    expect(cache.namespace('a:').keyPrefix).toBe('a:')
    expect(cache.namespace('a:').namespace('b:').keyPrefix).toBe('a:b:')
    await cache.namespace('a:').set('k', 'v')
    expect(await cache.namespace('a').get('k')).toBe('v')
    expect(remote.keys()).toEqual(['a:k'])
  })

  it('share stats and events with the root stack; events carry full keys', async () => {
    const { cache } = twoLayers()
    const ns = cache.namespace('t1')
    const seen: string[] = []
    ns.on('set', (e) => seen.push(`set ${e.key}`))
    cache.on('hit', (e) => seen.push(`hit ${e.key}`))
    cache.on('miss', (e) => seen.push(`miss ${e.key}`))
    await ns.set('k', 1)
    await ns.get('k')
    await ns.get('nope')
    await cache.set('root', 2)
    expect(seen).toEqual(['set t1:k', 'hit t1:k', 'miss t1:nope', 'set root'])
    expect(ns.getStats()).toEqual(cache.getStats())
    expect(cache.getStats()).toMatchObject({ hits: 1, misses: 1, sets: 2 })
    ns.resetStats()
    expect(cache.getStats()).toMatchObject({ hits: 0, misses: 0, sets: 0 })
    expect(ns.layers).toBe(cache.layers)
  })

  it('offer the same API: getOrSet, mget, mset, mdelete, has, wrap', async () => {
    const { remote, cache } = twoLayers()
    const ns = cache.namespace('shop')
    expect(await ns.getOrSet('p1', () => 'product 1')).toBe('product 1')
    await ns.mset([
      { key: 'p2', value: 'product 2' },
      { key: 'p3', value: 'product 3', ttl: 60_000 },
    ])
    expect(await ns.mget(['p1', 'p2', 'p3', 'p4'])).toEqual([
      'product 1',
      'product 2',
      'product 3',
      undefined,
    ])
    expect(await ns.has('p2')).toBe(true)
    const fn = vi.fn((id: number) => `computed ${id}`)
    const wrapped = ns.wrap('calc', fn)
    expect(await wrapped(7)).toBe('computed 7')
    expect(await wrapped(7)).toBe('computed 7')
    expect(fn).toHaveBeenCalledTimes(1)
    expect(remote.keys().sort()).toEqual(['shop:calc:[7]', 'shop:p1', 'shop:p2', 'shop:p3'])
    await ns.mdelete(['p1', 'p2'])
    expect(remote.keys().sort()).toEqual(['shop:calc:[7]', 'shop:p3'])
    expect(await cache.mget(['shop:p1', 'shop:p3'])).toEqual([undefined, 'product 3'])
  })

  it('single-flight across the root and a namespace view for the same full key', async () => {
    const { cache } = twoLayers()
    const gate = deferred<string>()
    const loader = vi.fn(() => gate.promise)
    const viaNs = cache.namespace('a').getOrSet('k', loader)
    const viaRoot = cache.getOrSet('a:k', loader)
    gate.resolve('once')
    expect(await Promise.all([viaNs, viaRoot])).toEqual(['once', 'once'])
    expect(loader).toHaveBeenCalledTimes(1)
  })

  it('fence a load in a namespace when the full key is deleted through another view', async () => {
    const { l1, remote, cache } = twoLayers()
    const fenced: CacheEventMap['fenced'][] = []
    cache.on('fenced', (e) => fenced.push(e))
    const gate = deferred<string>()
    const started = deferred<void>()
    const pending = cache.namespace('t').getOrSet('k', () => {
      started.resolve()
      return gate.promise
    })
    await started.promise
    await cache.delete('t:k')
    gate.resolve('stale')
    await pending
    await flush()
    expect(l1.has('t:k')).toBe(false)
    expect(remote.hasKey('t:k')).toBe(false)
    expect(fenced).toEqual([{ key: 't:k' }])
  })

  it('off() on a namespace removes a listener added through the root', async () => {
    const { cache } = twoLayers()
    const listener = vi.fn()
    cache.on('set', listener)
    cache.namespace('x').off('set', listener)
    await cache.set('k', 1)
    expect(listener).not.toHaveBeenCalled()
  })
})
