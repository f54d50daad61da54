import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { describe, expect, it, vi } from 'vitest'

describe('MemoryLayer under a CacheStack', () => {
  it("'freeze': getOrSet hands every caller the frozen cached copy, never freezing the loader's object", async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const loaded = { items: [{ id: 1 }] }
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const loader = vi.fn(async () => {
      await gate
      return loaded
    })
    const calls = [1, 2, 3].map(() => cache.getOrSet('k', loader))
    release()
    const results = await Promise.all(calls)
    expect(Object.isFrozen(loaded)).toBe(false)
    expect(Object.isFrozen(loaded.items[0])).toBe(false)
    expect(results[0]).not.toBe(loaded)
    expect(results[0]).toEqual(loaded)
    expect(results[1]).toBe(results[0])
    expect(results[2]).toBe(results[0])
    expect(Object.isFrozen(results[0]?.items[0])).toBe(true)
    expect(() => results[0]?.items.push({ id: 2 })).toThrow(TypeError)
    // A hit returns the same frozen object as the load did.
    expect(await cache.getOrSet('k', loader)).toBe(results[0])
    expect(await cache.get('k')).toBe(results[0])
  })

  it("'freeze': a value read with get cannot be mutated and later reads are unaffected", async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', { count: 1 })
    const value = (await cache.get('k')) as { count: number }
    expect(() => {
      value.count++
    }).toThrow(TypeError)
    expect(await cache.get('k')).toEqual({ count: 1 })
  })

  it("'freeze': a caller moving a nested Date it got never moves what the next reader gets", async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', { order: { placedAt: new Date(0) } })
    const got = (await cache.get('k')) as { order: { placedAt: Date } }
    got.order.placedAt.setTime(1_000)
    expect(await cache.get('k')).toEqual({ order: { placedAt: new Date(0) } })
    const loaded = await cache.getOrSet('loaded', async () => ({ at: new Date(0) }))
    loaded.at.setTime(1_000)
    expect(await cache.getOrSet('loaded', async () => ({ at: new Date(5) }))).toEqual({ at: new Date(0) })
  })

  it("'clone': every call gets its own copy, loads included", async () => {
    const cache = new CacheStack([new MemoryLayer({ protection: 'clone' })])
    const loaded = { n: 1 }
    const first = await cache.getOrSet('k', () => loaded)
    const second = await cache.getOrSet('k', () => loaded)
    const third = await cache.get<{ n: number }>('k')
    expect(first).toEqual(loaded)
    expect(new Set([first, second, third, loaded]).size).toBe(4)
    first.n = 99
    expect(await cache.get('k')).toEqual({ n: 1 })
  })

  it("'none': getOrSet and get return the loader's own object", async () => {
    const cache = new CacheStack([new MemoryLayer({ protection: 'none' })])
    const loaded = { n: 1 }
    expect(await cache.getOrSet('k', () => loaded)).toBe(loaded)
    expect(await cache.get('k')).toBe(loaded)
  })

  it('a value too large for L1 still reaches the lower layer and is served from there', async () => {
    const l1 = new MemoryLayer({ name: 'l1', maxEntryBytes: 1000 })
    const l2 = new MemoryLayer({ name: 'l2' })
    const cache = new CacheStack([l1, l2])
    const big = 'x'.repeat(5000)
    await cache.set('small', 'tiny')
    await cache.set('k', 'was small')
    expect(l1.has('k')).toBe(true)
    const loader = vi.fn(() => big)
    await cache.delete('k')
    expect(await cache.getOrSet('k', loader)).toBe(big)
    expect(l1.has('k')).toBe(false)
    expect(l2.get('k')?.value).toBe(big)
    expect(await cache.get('k')).toBe(big)
    expect(loader).toHaveBeenCalledTimes(1)
    // Overwriting a small cached value with a big one removes the small one from L1.
    await cache.set('small', big)
    expect(l1.has('small')).toBe(false)
    expect(await cache.get('small')).toBe(big)
  })

  it('an entry bound on L1 evicts there only; the lower layer still has everything', async () => {
    const l1 = new MemoryLayer({ name: 'l1', maxSize: 2 })
    const l2 = new MemoryLayer({ name: 'l2' })
    const cache = new CacheStack([l1, l2])
    for (let i = 0; i < 10; i++) await cache.set(`k${i}`, i)
    expect(l1.size).toBe(2)
    expect(l2.size).toBe(10)
    expect(await cache.get('k0')).toBe(0)
    expect(l1.has('k0')).toBe(true)
    expect(cache.getStats().backfills).toBe(1)
  })

  it("a back-fill from a lower 'none' layer does not freeze the object the caller stored", async () => {
    const l1 = new MemoryLayer({ name: 'l1' })
    const l2 = new MemoryLayer({ name: 'l2', protection: 'none' })
    const cache = new CacheStack([l1, l2])
    const mine = { editable: true, nested: { n: 1 } }
    await cache.set('k', mine)
    l1.delete('k') // as if evicted from L1
    expect(await cache.get('k')).toEqual(mine)
    expect(Object.isFrozen(mine)).toBe(false)
    expect(Object.isFrozen(mine.nested)).toBe(false)
  })
})
