/**
 * Invariant 1 (no resurrection): a value read from a lower layer or produced by a loader is never written
 * to any layer when an invalidation of its key landed after that read or load began.
 */
import { type CacheEventMap, CacheStack } from '@layercache/core'
import { describe, expect, it, vi } from 'vitest'
import { deferred, flush, MemoryLayer, RemoteLayer, seededRandom, ticks } from './support/remote-layer'

function twoLayers() {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote])
  const fenced: CacheEventMap['fenced'][] = []
  cache.on('fenced', (e) => fenced.push(e))
  return { l1, remote, cache, fenced }
}

/** A loader parked until `finish(value)`; `started` resolves when the stack has called it. */
function gatedLoader<T>() {
  const started = deferred<void>()
  const result = deferred<T>()
  const loader = vi.fn(() => {
    started.resolve()
    return result.promise
  })
  return { loader, started: started.promise, finish: (value: T) => result.resolve(value) }
}

describe('no resurrection after a load', () => {
  it('a delete landing while the loader runs keeps the loaded value out of every layer', async () => {
    const { l1, remote, cache, fenced } = twoLayers()
    const { loader, started, finish } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    await started
    await cache.delete('k')
    finish('loaded before the delete')
    // The caller that started the load still gets its result...
    expect(await pending).toBe('loaded before the delete')
    await flush()
    // ...but nothing is written back.
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(remote.calls.write).toBe(0)
    expect(cache.getStats().fencedWrites).toBe(1)
    expect(fenced).toEqual([{ key: 'k' }])
    expect(await cache.get('k')).toBeUndefined()
  })

  it('an mdelete covering the key fences the load too', async () => {
    const { l1, remote, cache } = twoLayers()
    const { loader, started, finish } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    await started
    await cache.mdelete(['x', 'k'])
    finish('stale')
    await pending
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(cache.getStats().fencedWrites).toBe(1)
  })

  it('a set landing during a load wins over the load result in every layer', async () => {
    const { l1, remote, cache, fenced } = twoLayers()
    const { loader, started, finish } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    await started
    await cache.set('k', 'written meanwhile')
    finish('loaded')
    await pending
    await flush()
    expect(l1.get('k')?.value).toBe('written meanwhile')
    expect(remote.peek('k')).toBe('written meanwhile')
    expect(remote.writesApplied).toBe(1)
    expect(fenced).toEqual([{ key: 'k' }])
    expect(await cache.get('k')).toBe('written meanwhile')
  })

  it("a delete landing while the load's remote write is still being issued drops that write", async () => {
    const { l1, remote, cache } = twoLayers()
    const hold = remote.holdRequests('write')
    const pending = cache.getOrSet('k', () => 'loaded')
    await hold.reached()
    await cache.delete('k')
    hold.release()
    await pending
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(remote.writesDropped).toBe(1)
    expect(remote.writesApplied).toBe(0)
  })

  it('an invalidation of another key does not fence the load', async () => {
    const { l1, remote, cache, fenced } = twoLayers()
    const { loader, started, finish } = gatedLoader<string>()
    const pending = cache.getOrSet('k', loader)
    await started
    await cache.delete('other')
    await cache.set('another', 1)
    finish('fresh')
    await pending
    expect(l1.get('k')?.value).toBe('fresh')
    expect(remote.peek('k')).toBe('fresh')
    expect(fenced).toEqual([])
  })

  it('a getOrSet that starts after a delete resolved is not served a value loaded before the delete', async () => {
    const { cache } = twoLayers()
    let version = 1
    const { loader, started, finish } = gatedLoader<number>()
    const before = cache.getOrSet('k', loader)
    await started
    const readVersion = version // what the in-flight loader read from the "database"
    version = 2
    await cache.delete('k')
    const after = cache.getOrSet('k', async () => version)
    finish(readVersion)
    expect(await before).toBe(1)
    // This call began after the invalidation resolved: joining the older flight serves the deleted version.
    expect(await after).toBe(2)
  })
})

describe('no resurrection after a lower-layer read', () => {
  it('a delete landing while the remote get is in flight keeps its value out of L1', async () => {
    const { l1, remote, cache, fenced } = twoLayers()
    remote.seed('k', 'old')
    const hold = remote.holdResponses('get')
    const reading = cache.get('k')
    await hold.reached()
    await cache.delete('k')
    hold.release()
    await reading
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(cache.getStats()).toMatchObject({ fencedWrites: 1, backfills: 0 })
    expect(fenced).toEqual([{ key: 'k' }])
    expect(await cache.get('k')).toBeUndefined()
  })

  it('the same holds for the read a getOrSet does before loading', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', 'old')
    const hold = remote.holdResponses('get')
    const loader = vi.fn(() => 'loaded')
    const pending = cache.getOrSet('k', loader)
    await hold.reached()
    await cache.delete('k')
    hold.release()
    await pending
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(remote.hasKey('k')).toBe(false)
    expect(cache.getStats().fencedWrites).toBe(1)
  })

  it('the same holds for mget', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.seed('a', 'A')
    remote.seed('b', 'B')
    const hold = remote.holdResponses('getMany')
    const reading = cache.mget(['a', 'b'])
    await hold.reached()
    await cache.delete('a')
    hold.release()
    expect(await reading).toEqual(['A', 'B'])
    await flush()
    expect(l1.has('a')).toBe(false)
    // Only the invalidated key is fenced.
    expect(l1.get('b')?.value).toBe('B')
    expect(cache.getStats()).toMatchObject({ fencedWrites: 1, backfills: 1 })
  })

  it('a set landing while the remote get is in flight is not overwritten by the back-fill', async () => {
    const { l1, remote, cache } = twoLayers()
    remote.seed('k', 'old')
    const hold = remote.holdResponses('get')
    const reading = cache.get('k')
    await hold.reached()
    await cache.set('k', 'new')
    hold.release()
    await reading
    await flush()
    expect(l1.get('k')?.value).toBe('new')
    expect(remote.peek('k')).toBe('new')
    expect(await cache.get('k')).toBe('new')
  })

  it('an invalidation of another key does not fence the back-fill', async () => {
    const { l1, remote, cache, fenced } = twoLayers()
    remote.seed('k', 'v')
    const hold = remote.holdResponses('get')
    const reading = cache.get('k')
    await hold.reached()
    await cache.delete('other')
    hold.release()
    expect(await reading).toBe('v')
    expect(l1.get('k')?.value).toBe('v')
    expect(fenced).toEqual([])
  })

  it('a back-fill into a slower middle layer does not land after a delete (three layers)', async () => {
    const l1 = new MemoryLayer()
    const l2 = new RemoteLayer({ name: 'l2' })
    const l3 = new RemoteLayer({ name: 'l3' })
    const cache = new CacheStack([l1, l2, l3])
    l3.seed('k', 'old')
    const hold = l2.holdRequests('write')
    expect(await cache.get('k')).toBe('old')
    await hold.reached()
    await cache.delete('k')
    hold.release()
    await flush()
    expect(l1.has('k')).toBe(false)
    expect(l3.hasKey('k')).toBe(false)
    // The back-fill into l2 was still being issued when the delete resolved: it must be dropped.
    expect(l2.hasKey('k')).toBe(false)
    expect(await cache.get('k')).toBeUndefined()
  })
})

describe('overlapping writes', () => {
  it('the later of two overlapping sets wins in every layer', async () => {
    const { l1, remote, cache } = twoLayers()
    const hold = remote.holdRequests('write', 1)
    const first = cache.set('k', 'first')
    await hold.reached()
    await cache.set('k', 'second')
    hold.release()
    await first
    expect(l1.get('k')?.value).toBe('second')
    // The first set's remote write went out after the second one's: it must not replace it.
    expect(remote.peek('k')).toBe('second')
  })
})

describe('random interleavings', () => {
  it('no stale value survives 1000 random interleavings of loads, reads, sets and deletes', async () => {
    const rng = seededRandom(0xc0ffee)
    // One entry in L1: the two keys of an iteration keep evicting each other, forcing read-throughs.
    const l1 = new MemoryLayer({ maxSize: 1 })
    const remote = new RemoteLayer()
    remote.latency = () => rng.int(0, 3)
    remote.responseLatency = () => rng.int(0, 4)
    const cache = new CacheStack([l1, remote])
    const db = new Map<string, number>()
    const read = (key: string) => db.get(key) ?? 0

    for (let i = 0; i < 1000; i++) {
      const keys = [`a${i}`, `b${i}`]
      // Start from a random but consistent state: absent, only in the remote, or in both layers.
      for (const key of keys) {
        const start = rng.int(0, 2)
        if (start === 1) remote.seed(key, read(key))
        if (start === 2) await cache.set(key, read(key))
      }
      const ops: Promise<unknown>[] = []
      const count = rng.int(3, 9)
      for (let j = 0; j < count; j++) {
        const key = keys[rng.int(0, 1)]!
        const kind = rng.int(0, 5)
        const delay = rng.int(0, 8)
        ops.push(
          (async () => {
            await ticks(delay)
            switch (kind) {
              case 0:
                return cache.getOrSet(key, async () => {
                  const value = read(key)
                  await ticks(rng.int(0, 6))
                  return value
                })
              case 1:
                return cache.get(key)
              case 2:
                return cache.mget(keys)
              case 3:
                db.set(key, read(key) + 1)
                return cache.delete(key)
              case 4: {
                const value = read(key) + 1
                db.set(key, value)
                return cache.set(key, value)
              }
              default:
                return cache.has(key)
            }
          })(),
        )
      }
      await Promise.all(ops)
      await flush()
      for (const key of keys) {
        const current = read(key)
        const inL1 = l1.get(key)
        if (inL1 !== undefined) expect(inL1.value, `iteration ${i}: L1 ${key}`).toBe(current)
        if (remote.hasKey(key)) expect(remote.peek(key), `iteration ${i}: remote ${key}`).toBe(current)
        const value = await cache.get(key)
        if (value !== undefined) expect(value, `iteration ${i}: get ${key}`).toBe(current)
      }
    }
    // The run really exercised the races it is meant to check.
    const stats = cache.getStats()
    expect(stats.fencedWrites).toBeGreaterThan(0)
    expect(stats.backfills).toBeGreaterThan(0)
    expect(stats.coalesced).toBeGreaterThan(0)
  })
})
