import { type CacheEventMap, CacheStack, type CacheStackOptions } from '@layercache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { flush, MemoryLayer, RemoteLayer, useFakeClock } from './support/remote-layer'

function twoLayers(options: CacheStackOptions = {}, l1Ttl?: number, remoteTtl?: number) {
  const l1 = new MemoryLayer(l1Ttl === undefined ? {} : { ttl: l1Ttl })
  const remote = new RemoteLayer(remoteTtl === undefined ? {} : { ttl: remoteTtl })
  const cache = new CacheStack([l1, remote], options)
  return { l1, remote, cache }
}

describe('CacheStack get / set / delete / has', () => {
  it('set writes the value to every layer and get answers from L1 without touching the remote', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('user:1', { name: 'Ada' })
    expect(l1.get('user:1')?.value).toEqual({ name: 'Ada' })
    expect(remote.peek('user:1')).toEqual({ name: 'Ada' })
    const before = remote.calls.get
    expect(await cache.get('user:1')).toEqual({ name: 'Ada' })
    expect(remote.calls.get).toBe(before)
    expect(cache.getStats().layers[0]).toMatchObject({ name: 'memory', hits: 1 })
  })

  it('get of an absent key returns undefined after asking every layer', async () => {
    const { remote, cache } = twoLayers()
    expect(await cache.get('nope')).toBeUndefined()
    expect(remote.log).toEqual([{ op: 'get', keys: ['nope'] }])
    expect(cache.getStats()).toMatchObject({ hits: 0, misses: 1 })
  })

  it('set overwrites the previous value in every layer', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('k', 'one')
    await cache.set('k', 'two')
    expect(l1.get('k')?.value).toBe('two')
    expect(remote.peek('k')).toBe('two')
    expect(await cache.get('k')).toBe('two')
  })

  it('delete removes the key from every layer', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('k', 'v')
    await cache.delete('k')
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(false)
  })

  it('delete of an absent key resolves and mdelete removes several keys', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.delete('absent')
    await cache.mset([
      { key: 'a', value: 1 },
      { key: 'b', value: 2 },
      { key: 'c', value: 3 },
    ])
    await cache.mdelete(['a', 'c'])
    expect([l1.has('a'), l1.has('b'), l1.has('c')]).toEqual([false, true, false])
    expect(remote.keys().sort()).toEqual(['b'])
    await cache.mdelete([])
    expect(remote.keys()).toEqual(['b'])
  })

  it('has answers from any layer and does not back-fill', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('both', 1)
    remote.seed('remoteOnly', 2)
    expect(await cache.has('both')).toBe(true)
    expect(await cache.has('remoteOnly')).toBe(true)
    expect(await cache.has('none')).toBe(false)
    expect(l1.has('remoteOnly')).toBe(false)
  })

  it('caches falsy values (0, empty string, false, null) as hits', async () => {
    const { remote, cache } = twoLayers()
    const values: Record<string, unknown> = { zero: 0, empty: '', no: false, nil: null }
    for (const [key, value] of Object.entries(values)) await cache.set(key, value)
    const before = remote.calls.get
    for (const [key, value] of Object.entries(values)) {
      expect(await cache.get(key)).toBe(value)
      expect(await cache.has(key)).toBe(true)
    }
    expect(remote.calls.get).toBe(before)
    expect(cache.getStats()).toMatchObject({ hits: 4, misses: 0 })
  })

  it('a hit in the remote layer is back-filled into L1 so the next get does not reach the remote', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', { n: 1 })
    expect(await cache.get('k')).toEqual({ n: 1 })
    expect(l1.get('k')?.value).toEqual({ n: 1 })
    const before = remote.calls.get
    expect(await cache.get('k')).toEqual({ n: 1 })
    expect(remote.calls.get).toBe(before)
    expect(cache.getStats()).toMatchObject({ hits: 2, backfills: 1 })
    expect(cache.getStats().layers.map((l) => l.hits)).toEqual([1, 1])
  })

  it('does not keep a reference to the object passed to set', async () => {
    const { cache } = twoLayers()
    const value = { list: [1, 2] }
    await cache.set('k', value)
    value.list.push(3)
    expect(await cache.get('k')).toEqual({ list: [1, 2] })
  })

  it('works with a remote layer alone (no in-process L1)', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([remote])
    await cache.set('k', 'v')
    expect(await cache.get('k')).toBe('v')
    expect(await cache.has('k')).toBe(true)
    expect(await cache.mget(['k', 'x'])).toEqual(['v', undefined])
    expect(await cache.getOrSet('y', () => 'loaded')).toBe('loaded')
    expect(remote.peek('y')).toBe('loaded')
    await cache.delete('k')
    expect(await cache.get('k')).toBeUndefined()
  })

  it('with three layers a hit in the last one is back-filled into both faster layers', async () => {
    const l1 = new MemoryLayer()
    const l2 = new RemoteLayer({ name: 'l2' })
    const l3 = new RemoteLayer({ name: 'l3' })
    const cache = new CacheStack([l1, l2, l3])
    const backfills: CacheEventMap['backfill'][] = []
    cache.on('backfill', (e) => backfills.push(e))
    l3.seed('k', 'deep')
    expect(await cache.get('k')).toBe('deep')
    await flush() // lets the asynchronous back-fill into l2 finish
    expect(l1.get('k')?.value).toBe('deep')
    expect(l2.peek('k')).toBe('deep')
    expect(backfills.map((b) => [b.from, b.to])).toEqual([
      ['l3', 'memory'],
      ['l3', 'l2'],
    ])
    await cache.set('k', 'new')
    expect([l1.get('k')?.value, l2.peek('k'), l3.peek('k')]).toEqual(['new', 'new', 'new'])
  })

  it('exposes its layers and an empty key prefix', () => {
    const { l1, remote, cache } = twoLayers()
    expect(cache.layers).toEqual([l1, remote])
    expect(cache.keyPrefix).toBe('')
  })
})

describe('CacheStack mget / mset', () => {
  it('mget returns values in order, mixing L1 hits, remote hits and misses, in one remote round trip', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.set('a', 'A')
    remote.seed('b', 'B')
    remote.log.length = 0
    expect(await cache.mget(['a', 'b', 'c'])).toEqual(['A', 'B', undefined])
    expect(remote.log).toEqual([{ op: 'getMany', keys: ['b', 'c'] }])
    expect(l1.get('b')?.value).toBe('B')
    expect(cache.getStats()).toMatchObject({ hits: 2, misses: 1, backfills: 1 })
  })

  it('mget answers duplicate keys at every position', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('a', 1)
    remote.seed('b', 2)
    expect(await cache.mget(['a', 'b', 'a', 'x', 'b', 'x'])).toEqual([1, 2, 1, undefined, 2, undefined])
    expect(await cache.mget(['b', 'b'])).toEqual([2, 2])
  })

  it('mget of an empty array resolves to an empty array without calling any layer', async () => {
    const { remote, cache } = twoLayers()
    expect(await cache.mget([])).toEqual([])
    expect(remote.totalCalls).toBe(0)
    expect(cache.getStats()).toMatchObject({ hits: 0, misses: 0 })
  })

  it('mset writes every entry to every layer in one remote write', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.mset<unknown>([
      { key: 'a', value: 1 },
      { key: 'b', value: { deep: true } },
      { key: 'c', value: null },
    ])
    expect(remote.log).toEqual([{ op: 'write', keys: ['a', 'b', 'c'] }])
    expect([l1.get('a')?.value, l1.get('b')?.value, l1.get('c')?.value]).toEqual([1, { deep: true }, null])
    expect([remote.peek('a'), remote.peek('b'), remote.peek('c')]).toEqual([1, { deep: true }, null])
    expect(await cache.mget(['a', 'b', 'c'])).toEqual([1, { deep: true }, null])
    expect(cache.getStats().sets).toBe(3)
  })

  it('mset with the same key twice keeps the last value in every layer', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.mset([
      { key: 'k', value: 'first' },
      { key: 'other', value: 'o' },
      { key: 'k', value: 'last' },
    ])
    expect(l1.get('k')?.value).toBe('last')
    expect(remote.peek('k')).toBe('last')
    expect(await cache.get('k')).toBe('last')
  })

  it('mset of an empty array resolves and writes nothing', async () => {
    const { l1, remote, cache } = twoLayers()
    await cache.mset([])
    expect(l1.size).toBe(0)
    expect(remote.size).toBe(0)
    expect(cache.getStats().sets).toBe(0)
  })
})

describe('CacheStack TTLs (milliseconds)', () => {
  let clock: ReturnType<typeof useFakeClock> | undefined
  afterEach(() => {
    clock?.restore()
    clock = undefined
  })

  it('a per-call ttl expires the entry in every layer', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers()
    await cache.set('k', 'v', { ttl: 1000 })
    expect(remote.expiresAt('k')).toBe(Date.now() + 1000)
    clock.advance(999)
    expect(await cache.get('k')).toBe('v')
    clock.advance(2)
    expect(l1.get('k')).toBeUndefined()
    expect(remote.hasKey('k')).toBe(false)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('the stack default ttl applies when a call gives none, and a per-call ttl overrides it', async () => {
    clock = useFakeClock()
    const { remote, cache } = twoLayers({ ttl: 500 })
    await cache.set('default', 1)
    await cache.set('longer', 2, { ttl: 2000 })
    await cache.mset([{ key: 'm', value: 3 }])
    await cache.getOrSet('loaded', () => 4)
    const now = Date.now()
    expect(remote.expiresAt('default')).toBe(now + 500)
    expect(remote.expiresAt('m')).toBe(now + 500)
    expect(remote.expiresAt('loaded')).toBe(now + 500)
    expect(remote.expiresAt('longer')).toBe(now + 2000)
    clock.advance(501)
    expect(await cache.mget(['default', 'longer', 'm', 'loaded'])).toEqual([
      undefined,
      2,
      undefined,
      undefined,
    ])
    clock.advance(1500)
    expect(await cache.get('longer')).toBeUndefined()
  })

  it('without any ttl an entry does not expire', async () => {
    clock = useFakeClock()
    const { remote, cache } = twoLayers()
    await cache.set('k', 'v')
    expect(remote.expiresAt('k')).toBe(0)
    clock.advance(365 * 24 * 60 * 60 * 1000)
    expect(await cache.get('k')).toBe('v')
  })

  it('each layer caps the entry lifetime with its own ttl', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers({}, 100, 1000)
    await cache.set('k', 'v', { ttl: 5000 })
    expect(l1.get('k')?.expiresAt).toBe(Date.now() + 100)
    expect(remote.expiresAt('k')).toBe(Date.now() + 1000)
    clock.advance(101)
    expect(l1.get('k')).toBeUndefined()
    expect(remote.hasKey('k')).toBe(true)
    const hits: CacheEventMap['hit'][] = []
    cache.on('hit', (e) => hits.push(e))
    expect(await cache.get('k')).toBe('v')
    expect(hits).toEqual([{ key: 'k', layer: 'remote', layerIndex: 1 }])
    // The back-filled copy is capped by L1's ttl again.
    expect(l1.get('k')?.expiresAt).toBe(Date.now() + 100)
    clock.advance(900)
    expect(await cache.get('k')).toBeUndefined()
    expect(remote.hasKey('k')).toBe(false)
  })

  it('a shorter per-call ttl wins over a longer layer ttl', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers({}, 10_000, 10_000)
    await cache.set('k', 'v', { ttl: 50 })
    expect(l1.get('k')?.expiresAt).toBe(Date.now() + 50)
    expect(remote.expiresAt('k')).toBe(Date.now() + 50)
    clock.advance(51)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a back-filled L1 entry keeps the remaining ttl and expires when the remote one does', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', 'v', 1000)
    const remoteExpiry = remote.expiresAt('k')
    clock.advance(600)
    const backfills: CacheEventMap['backfill'][] = []
    cache.on('backfill', (e) => backfills.push(e))
    expect(await cache.get('k')).toBe('v')
    expect(backfills).toEqual([{ key: 'k', from: 'remote', to: 'memory', ttl: 400 }])
    expect(l1.get('k')?.expiresAt).toBe(remoteExpiry)
    clock.advance(399)
    expect(l1.get('k')?.value).toBe('v')
    clock.advance(2)
    // L1 has no ttl of its own: only the carried-over remaining ttl can have removed it.
    expect(l1.get('k')).toBeUndefined()
    expect(await cache.get('k')).toBeUndefined()
  })

  it('mget back-fills with the remaining ttl too', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers()
    remote.seed('a', 'A', 300)
    remote.seed('b', 'B')
    clock.advance(100)
    expect(await cache.mget(['a', 'b'])).toEqual(['A', 'B'])
    expect(l1.get('a')?.expiresAt).toBe(remote.expiresAt('a'))
    expect(l1.get('b')?.expiresAt).toBe(0)
    clock.advance(201)
    expect(l1.get('a')).toBeUndefined()
    expect(l1.get('b')?.value).toBe('B')
  })

  it('a back-filled entry without expiry gets the L1 layer ttl', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers({}, 250)
    remote.seed('k', 'v')
    expect(await cache.get('k')).toBe('v')
    expect(l1.get('k')?.expiresAt).toBe(Date.now() + 250)
    clock.advance(251)
    expect(l1.get('k')).toBeUndefined()
    expect(await cache.get('k')).toBe('v')
  })

  it('an entry that expired in the remote layer is a miss and is not back-filled', async () => {
    clock = useFakeClock()
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', 'v', 10)
    clock.advance(10)
    expect(await cache.get('k')).toBeUndefined()
    expect(l1.has('k')).toBe(false)
    expect(cache.getStats().backfills).toBe(0)
  })
})
