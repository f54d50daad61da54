import { type CacheEventMap, CacheEvents, CacheStack } from '@layercache/core'
import { describe, expect, it, vi } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer, ticks } from './support/remote-layer'

function twoLayers() {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote])
  return { l1, remote, cache }
}

/** Records every event of the listed kinds, in order, as [name, payload]. */
function record(cache: CacheStack, names: (keyof CacheEventMap)[]) {
  const log: [string, unknown][] = []
  for (const name of names) cache.on(name, (e: unknown) => log.push([name, e]))
  return log
}

describe('events', () => {
  it('hit names the layer that answered', async () => {
    const { remote, cache } = twoLayers()
    const log = record(cache, ['hit'])
    await cache.set('a', 1)
    remote.seed('b', 2)
    await cache.get('a')
    await cache.get('b')
    await cache.get('b')
    expect(log).toEqual([
      ['hit', { key: 'a', layer: 'memory', layerIndex: 0 }],
      ['hit', { key: 'b', layer: 'remote', layerIndex: 1 }],
      ['hit', { key: 'b', layer: 'memory', layerIndex: 0 }],
    ])
  })

  it('miss, backfill, set, delete in the order they happen', async () => {
    const { remote, cache } = twoLayers()
    const log = record(cache, ['miss', 'backfill', 'set', 'delete'])
    await cache.get('nope')
    remote.seed('r', 'v')
    await cache.get('r')
    await cache.set('s', 1)
    await cache.mset([
      { key: 'm1', value: 1 },
      { key: 'm2', value: 2 },
    ])
    await cache.delete('s')
    await cache.mdelete(['m1', 'm2'])
    expect(log).toEqual([
      ['miss', { key: 'nope' }],
      ['backfill', { key: 'r', from: 'remote', to: 'memory', ttl: undefined }],
      ['set', { key: 's' }],
      ['set', { key: 'm1' }],
      ['set', { key: 'm2' }],
      ['delete', { key: 's' }],
      ['delete', { key: 'm1' }],
      ['delete', { key: 'm2' }],
    ])
  })

  it('load reports the duration, and the error when the loader throws', async () => {
    const { cache } = twoLayers()
    const loads: CacheEventMap['load'][] = []
    cache.on('load', (e) => loads.push(e))
    await cache.getOrSet('ok', () => 1)
    const failure = new Error('db')
    await expect(
      cache.getOrSet('bad', () => {
        throw failure
      }),
    ).rejects.toBe(failure)
    expect(loads).toHaveLength(2)
    expect(loads[0]).toEqual({ key: 'ok', durationMs: expect.any(Number) })
    expect(loads[0]).not.toHaveProperty('error')
    expect(loads[1]).toEqual({ key: 'bad', durationMs: expect.any(Number), error: failure })
    for (const load of loads) expect(load.durationMs).toBeGreaterThanOrEqual(0)
  })

  it('coalesced fires once per caller that joined a load in flight', async () => {
    const { cache } = twoLayers()
    const log = record(cache, ['coalesced', 'load', 'miss'])
    const gate = deferred<string>()
    const calls = [1, 2, 3, 4].map(() => cache.getOrSet('k', () => gate.promise))
    await ticks(10)
    gate.resolve('v')
    await Promise.all(calls)
    expect(log.map(([name]) => name)).toEqual(['coalesced', 'coalesced', 'coalesced', 'miss', 'load'])
    expect(log[0]).toEqual(['coalesced', { key: 'k' }])
  })

  it('mget reports hits and misses like get does', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('a', 1)
    remote.seed('b', 2)
    const log = record(cache, ['hit', 'miss'])
    await cache.mget(['a', 'b', 'c'])
    const stats = cache.getStats()
    expect(log.filter(([name]) => name === 'hit')).toHaveLength(stats.hits)
    expect(log.filter(([name]) => name === 'miss')).toHaveLength(stats.misses)
    expect(log).toEqual(
      expect.arrayContaining([
        ['hit', { key: 'a', layer: 'memory', layerIndex: 0 }],
        ['hit', { key: 'b', layer: 'remote', layerIndex: 1 }],
        ['miss', { key: 'c' }],
      ]),
    )
  })

  it('a throwing listener does not break a cache call, and later listeners still run', async () => {
    const { cache } = twoLayers()
    const after = vi.fn()
    for (const name of ['hit', 'miss', 'set', 'delete', 'load', 'backfill'] as const) {
      cache.on(name, () => {
        throw new Error(`listener bug on ${name}`)
      })
    }
    cache.on('hit', after)
    await cache.set('k', 'v')
    expect(await cache.get('k')).toBe('v')
    expect(await cache.get('nope')).toBeUndefined()
    expect(await cache.getOrSet('loaded', () => 'x')).toBe('x')
    await cache.delete('k')
    expect(after).toHaveBeenCalledTimes(1)
  })

  it('off() and the function returned by on() unsubscribe exactly that listener', async () => {
    const { cache } = twoLayers()
    const first = vi.fn()
    const second = vi.fn()
    const third = vi.fn()
    const unsubscribe = cache.on('set', first)
    cache.on('set', second)
    cache.on('set', third)
    await cache.set('a', 1)
    unsubscribe()
    cache.off('set', third)
    await cache.set('b', 2)
    expect(first).toHaveBeenCalledTimes(1)
    expect(third).toHaveBeenCalledTimes(1)
    expect(second).toHaveBeenCalledTimes(2)
    expect(second).toHaveBeenLastCalledWith({ key: 'b' })
    // Unsubscribing twice, or a listener never added, is harmless.
    unsubscribe()
    cache.off('set', vi.fn())
    cache.off('miss', vi.fn())
    await cache.set('c', 3)
    expect(second).toHaveBeenCalledTimes(3)
  })

  it('a listener may unsubscribe itself while an event is being delivered', () => {
    const events = new CacheEvents()
    const calls: string[] = []
    const off = events.on('set', () => {
      calls.push('self-removing')
      off()
    })
    events.on('set', () => calls.push('other'))
    events.emit('set', { key: 'a' })
    events.emit('set', { key: 'b' })
    expect(calls).toEqual(['self-removing', 'other', 'other'])
    expect(events.listening('set')).toBe(true)
    expect(events.listening('miss')).toBe(false)
  })
})

describe('stats', () => {
  it('counts hits per layer, misses, backfills, sets, deletes and loads', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('a', 1)
    remote.seed('b', 2)
    await cache.get('a') // L1 hit
    await cache.get('b') // L1 miss, remote hit, backfill
    await cache.get('b') // L1 hit
    await cache.get('c') // miss everywhere
    await cache.getOrSet('d', () => 4) // miss, load
    await cache.delete('a')
    await cache.getOrSet('e', () => Promise.reject(new Error('x'))).catch(() => undefined)
    expect(cache.getStats()).toEqual({
      hits: 3,
      misses: 3,
      hitRate: 0.5,
      layers: [
        { name: 'memory', hits: 2, misses: 4, errors: 0 },
        { name: 'remote', hits: 1, misses: 3, errors: 0 },
      ],
      backfills: 1,
      loaderCalls: 2,
      loaderErrors: 1,
      coalesced: 0,
      fencedWrites: 0,
      // Explicit writes only: a getOrSet load is not a set.
      sets: 1,
      deletes: 1,
      errors: 0,
      staleServed: 0,
      staleOnError: 0,
      staleOnTimeout: 0,
      backgroundRefreshes: 0,
      earlyRefreshes: 0,
      softTimeouts: 0,
      hardTimeouts: 0,
      negativeHits: 0,
      uncached: 0,
      warmed: 0,
      rewarmed: 0,
      invalidations: 0,
      expirations: 0,
      skippedWrites: 0,
      circuitOpens: 0,
      corruptEntries: 0,
      schemaMismatches: 0,
      busPublished: 0,
      busPublishErrors: 0,
      peerInvalidations: 0,
      unverifiedFlushes: 0,
      coordinatedWaits: 0,
      coordinatedAnswers: 0,
      refreshesSkipped: 0,
      coordinatorErrors: 0,
      uncoordinatedLoads: 0,
      leasesLost: 0,
    })
  })

  it('hitRate is 0 before any read and hits / (hits + misses) after', async () => {
    const { cache } = twoLayers()
    expect(cache.getStats().hitRate).toBe(0)
    await cache.set('k', 1)
    for (let i = 0; i < 3; i++) await cache.get('k')
    await cache.get('missing')
    expect(cache.getStats().hitRate).toBe(0.75)
  })

  it('resetStats zeroes every counter, including per-layer ones', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('a', 1)
    remote.seed('b', 2)
    await cache.get('a')
    await cache.get('b')
    await cache.get('c')
    await cache.getOrSet('d', () => 4)
    await cache.delete('a')
    cache.resetStats()
    const stats = cache.getStats()
    expect(stats).toEqual({
      hits: 0,
      misses: 0,
      hitRate: 0,
      layers: [
        { name: 'memory', hits: 0, misses: 0, errors: 0 },
        { name: 'remote', hits: 0, misses: 0, errors: 0 },
      ],
      backfills: 0,
      loaderCalls: 0,
      loaderErrors: 0,
      coalesced: 0,
      fencedWrites: 0,
      sets: 0,
      deletes: 0,
      errors: 0,
      staleServed: 0,
      staleOnError: 0,
      staleOnTimeout: 0,
      backgroundRefreshes: 0,
      earlyRefreshes: 0,
      softTimeouts: 0,
      hardTimeouts: 0,
      negativeHits: 0,
      uncached: 0,
      warmed: 0,
      rewarmed: 0,
      invalidations: 0,
      expirations: 0,
      skippedWrites: 0,
      circuitOpens: 0,
      corruptEntries: 0,
      schemaMismatches: 0,
      busPublished: 0,
      busPublishErrors: 0,
      peerInvalidations: 0,
      unverifiedFlushes: 0,
      coordinatedWaits: 0,
      coordinatedAnswers: 0,
      refreshesSkipped: 0,
      coordinatorErrors: 0,
      uncoordinatedLoads: 0,
      leasesLost: 0,
    })
    // Counting resumes normally.
    await cache.get('b')
    expect(cache.getStats().hits).toBe(1)
  })

  it('getStats returns a snapshot that later calls do not change', async () => {
    const { cache } = twoLayers()
    const before = cache.getStats()
    await cache.set('k', 1)
    await cache.get('k')
    expect(before.hits).toBe(0)
    expect(before.sets).toBe(0)
    expect(cache.getStats().hits).toBe(1)
  })
})
