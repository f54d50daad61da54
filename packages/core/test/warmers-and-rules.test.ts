import {
  type CacheEventMap,
  CacheStack,
  InvalidationRules,
  InvalidKeyError,
  InvalidOptionError,
  InvalidPatternError,
} from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { MemoryLayer } from './support/remote-layer'

/**
 * Lets the warmers' scheduled turn and any refill it started run out (memory only, no timers: a few turns
 * always suffice). Only for checking that nothing (more) was refilled; a refill that must happen is
 * awaited with `rewarmed`.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** The stack's next 'rewarm' event: a warmer finished refilling its key (or failed to). */
function rewarmed(cache: CacheStack): Promise<CacheEventMap['rewarm']> {
  return new Promise((resolve) => {
    const off = cache.on('rewarm', (event) => {
      off()
      resolve(event)
    })
  })
}

function counting<T>(value: () => T) {
  let calls = 0
  return {
    loader: () => {
      calls++
      return value()
    },
    calls: () => calls,
  }
}

describe('warmers', () => {
  it('refill a key once right after a delete, a tag, a prefix, a pattern or a dependency removed it', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    let version = 0
    const home = counting(() => `home v${++version}`)
    cache.addWarmer('homepage', home.loader, { tags: ['featured'] })
    await cache.getOrSet('homepage', home.loader, { tags: ['featured'] })
    expect(home.calls()).toBe(1)

    let refilled = rewarmed(cache)
    await cache.delete('homepage')
    await refilled
    expect(home.calls()).toBe(2)
    expect(await cache.get('homepage')).toBe('home v2')

    refilled = rewarmed(cache)
    await cache.invalidateByTag('featured')
    await refilled
    expect(await cache.get('homepage')).toBe('home v3')

    refilled = rewarmed(cache)
    await cache.invalidateByPrefix('home')
    await refilled
    expect(await cache.get('homepage')).toBe('home v4')

    refilled = rewarmed(cache)
    await cache.invalidateByPattern('*page')
    await refilled
    await settle() // and no second refill follows
    expect(await cache.get('homepage')).toBe('home v5')
    expect(home.calls()).toBe(5)
    expect(cache.getStats().rewarmed).toBe(4)
  })

  it('a burst of invalidations refills once, and unrelated invalidations refill nothing', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const home = counting(() => 'home')
    cache.addWarmer('homepage', home.loader)
    await cache.set('homepage', 'home')
    await cache.set('other', 1)
    const refilled = rewarmed(cache)
    await Promise.all([cache.delete('homepage'), cache.delete('homepage'), cache.invalidateByPrefix('h')])
    await cache.delete('other')
    await refilled
    await settle() // and no second refill follows
    expect(home.calls()).toBe(1)
  })

  it('follow dependencies and namespaces, and stop when removed', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const shop = cache.namespace('shop')
    const home = counting(() => 'home')
    const stop = shop.addWarmer('homepage', home.loader, { dependsOn: ['product:1'] })
    await shop.set('product:1', { price: 10 })
    await shop.getOrSet('homepage', home.loader, { dependsOn: ['product:1'] })
    await cache.set('homepage', 'root page, not warmed')
    const refilled = rewarmed(cache)
    await cache.delete('homepage')
    await shop.delete('product:1')
    await refilled
    await settle() // and no second refill follows (the root key has no warmer)
    expect(home.calls()).toBe(2)
    expect(await shop.get('homepage')).toBe('home')
    stop()
    await shop.delete('homepage')
    await settle()
    expect(home.calls()).toBe(2)
  })

  it('refill every warmer after a generation bump, in the new generation', async () => {
    const cache = new CacheStack([new MemoryLayer()], { generation: 1 })
    const home = counting(() => 'home')
    cache.addWarmer('homepage', home.loader)
    await cache.getOrSet('homepage', home.loader)
    const refilled = rewarmed(cache)
    await cache.bumpGeneration()
    await refilled
    expect(home.calls()).toBe(2)
    expect(await cache.get('homepage')).toBe('home')
  })

  it('report a failing refill as an event and keep the key empty', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const events: CacheEventMap['rewarm'][] = []
    cache.on('rewarm', (event) => events.push(event))
    cache.addWarmer('homepage', () => {
      throw new Error('database down')
    })
    await cache.set('homepage', 'old')
    const refilled = rewarmed(cache)
    await cache.delete('homepage')
    await refilled
    await settle() // and no second attempt follows
    expect(events).toHaveLength(1)
    expect(events[0]?.key).toBe('homepage')
    expect(events[0]?.error).toEqual(new Error('database down'))
    expect(await cache.get('homepage')).toBeUndefined()
    expect(cache.getStats().rewarmed).toBe(0)
  })

  it('refuse bad registrations', () => {
    const cache = new CacheStack([new MemoryLayer()])
    expect(() => cache.addWarmer('', () => 1)).toThrow(InvalidKeyError)
    expect(() => cache.addWarmer('k', 'nope' as unknown as () => number)).toThrow(InvalidOptionError)
    expect(() => cache.addWarmer('k', () => 1, { ttl: -1 })).toThrow()
  })
})

describe('invalidate(plan) and InvalidationRules', () => {
  async function shop() {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('product:123', { price: 10 }, { tags: ['category:electronics'] })
    await cache.set('product:124', { price: 20 }, { tags: ['category:electronics'] })
    await cache.set('product:200', { price: 30 }, { tags: ['category:garden'] })
    await cache.set('featured', ['product:123'], { dependsOn: ['product:123'] })
    await cache.set('search:tv:1', 'results')
    await cache.set('search:tv:2', 'results')
    await cache.set('report:2024-04-01', 'r')
    return cache
  }

  it('applies keys (with dependents), tags, prefixes and patterns as one change', async () => {
    const cache = await shop()
    const removed = await cache.invalidate({
      keys: ['product:123'],
      tags: ['category:electronics'],
      prefixes: ['search:'],
      patterns: ['report:2024-04-*'],
    })
    // 1 key given + 1 more tagged product + 2 searches + 1 report (the dependent goes with its key).
    expect(removed).toBe(5)
    expect(
      await cache.mget(['product:123', 'product:124', 'featured', 'search:tv:1', 'report:2024-04-01']),
    ).toEqual([undefined, undefined, undefined, undefined, undefined])
    expect(await cache.get('product:200')).toEqual({ price: 30 })
  })

  it('validates the whole plan before removing anything', async () => {
    const cache = await shop()
    await expect(cache.invalidate({ keys: ['product:123'], patterns: [''] })).rejects.toBeInstanceOf(
      InvalidPatternError,
    )
    await expect(cache.invalidate({ keys: ['product:123', ''] })).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(
      cache.invalidate({ keys: ['product:123'], tagMode: 'some' as 'any', tags: ['x'] }),
    ).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(
      cache.invalidate({ keys: ['product:123'], everything: true } as unknown as { keys: string[] }),
    ).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.invalidate({ keys: 'product:123' as unknown as string[] })).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(await cache.get('product:123')).toEqual({ price: 10 })
    expect(await cache.get('featured')).toEqual(['product:123'])
  })

  it('turns domain events into their invalidations, and warms what they removed', async () => {
    const cache = await shop()
    const home = counting(() => 'home page')
    cache.addWarmer('featured', home.loader)
    const rules = new InvalidationRules<{
      'product.price-changed': { id: string; categoryId: string }
      'search.reindexed': { term: string }
    }>(cache)
      .on('product.price-changed', (e) => ({ keys: [`product:${e.id}`], tags: [`category:${e.categoryId}`] }))
      .on('search.reindexed', (e) => ({ prefixes: [`search:${e.term}:`] }))
    const refilled = rewarmed(cache)
    expect(await rules.handle('product.price-changed', { id: '123', categoryId: 'electronics' })).toBe(2)
    expect(await rules.handle('search.reindexed', { term: 'tv' })).toBe(2)
    await refilled
    await settle() // and no second refill follows
    expect(home.calls()).toBe(1)
    expect(await cache.get('featured')).toBe('home page')
    expect(await cache.get('product:124')).toBeUndefined()
  })

  it('refuses unknown events, bad rules and rules returning bad plans, removing nothing', async () => {
    const cache = await shop()
    const rules = new InvalidationRules<Record<string, { id: string }>>(cache)
    await expect(rules.handle('nope', { id: '1' })).rejects.toBeInstanceOf(InvalidOptionError)
    expect(() => rules.on('', () => ({}))).toThrow(InvalidOptionError)
    expect(() => rules.on('x', 'rule' as unknown as () => object)).toThrow(InvalidOptionError)
    rules.on('broken', (e) => ({ keys: [`product:${e.id}`], patterns: ['a\nb'] }))
    await expect(rules.handle('broken', { id: '123' })).rejects.toBeInstanceOf(InvalidPatternError)
    rules.on('throws', () => {
      throw new Error('rule bug')
    })
    await expect(rules.handle('throws', { id: '123' })).rejects.toThrow('rule bug')
    expect(await cache.get('product:123')).toEqual({ price: 10 })
  })
})
