import { InvalidationFence } from '@layercache/core'
import { describe, expect, it } from 'vitest'

describe('InvalidationFence', () => {
  it('does not fence a ticket when nothing was invalidated', () => {
    const fence = new InvalidationFence()
    const ticket = fence.begin()
    expect(fence.isFenced('k', ticket)).toBe(false)
    fence.end()
  })

  it('fences a ticket for a key invalidated after the ticket was taken, and only that key', () => {
    const fence = new InvalidationFence()
    const ticket = fence.begin()
    fence.invalidate('k')
    expect(fence.isFenced('k', ticket)).toBe(true)
    expect(fence.isFenced('other', ticket)).toBe(false)
    expect(fence.trackedKeys).toBe(1)
    fence.end()
  })

  it('does not fence a ticket taken after the invalidation', () => {
    const fence = new InvalidationFence()
    const early = fence.begin()
    fence.invalidate('k')
    const late = fence.begin()
    expect(fence.isFenced('k', early)).toBe(true)
    expect(fence.isFenced('k', late)).toBe(false)
    fence.invalidate('k')
    expect(fence.isFenced('k', late)).toBe(true)
    fence.end()
    fence.end()
  })

  it('an invalidation before any ticket fences nothing and is not tracked', () => {
    const fence = new InvalidationFence()
    fence.invalidate('k')
    expect(fence.trackedKeys).toBe(0)
    const ticket = fence.begin()
    expect(fence.isFenced('k', ticket)).toBe(false)
    fence.end()
  })

  it('keeps records while any ticket is open and drops them when the last one ends', () => {
    const fence = new InvalidationFence()
    const a = fence.begin()
    const b = fence.begin()
    fence.invalidate('k')
    fence.end() // one of the two reads finished
    expect(fence.trackedKeys).toBe(1)
    expect(fence.isFenced('k', a)).toBe(true)
    expect(fence.isFenced('k', b)).toBe(true)
    fence.end()
    expect(fence.trackedKeys).toBe(0)
  })

  it('invalidateAll fences every ticket issued before it, for every key', () => {
    const fence = new InvalidationFence()
    const before = fence.begin()
    fence.invalidateAll()
    const after = fence.begin()
    expect(fence.isFenced('any', before)).toBe(true)
    expect(fence.isFenced('other', before)).toBe(true)
    expect(fence.isFenced('any', after)).toBe(false)
    fence.end()
    fence.end()
  })

  it('is conservative on overflow: every open ticket counts as fenced, whatever the key', () => {
    const fence = new InvalidationFence(2)
    const open = fence.begin()
    fence.invalidate('a')
    fence.invalidate('b')
    expect(fence.trackedKeys).toBe(2)
    expect(fence.isFenced('untouched', open)).toBe(false)
    fence.invalidate('c') // one key too many
    expect(fence.trackedKeys).toBeLessThanOrEqual(2)
    for (const key of ['a', 'b', 'c', 'untouched']) expect(fence.isFenced(key, open), key).toBe(true)
    // Tickets taken after the overflow are precise again.
    const fresh = fence.begin()
    expect(fence.isFenced('a', fresh)).toBe(false)
    fence.invalidate('a')
    expect(fence.isFenced('a', fresh)).toBe(true)
    expect(fence.isFenced('b', fresh)).toBe(false)
    fence.end()
    fence.end()
  })

  it('stays bounded by maxTrackedKeys however many keys are invalidated during a read', () => {
    const fence = new InvalidationFence(10)
    const open = fence.begin()
    let max = 0
    for (let i = 0; i < 1000; i++) {
      fence.invalidate(`k${i}`)
      max = Math.max(max, fence.trackedKeys)
    }
    expect(max).toBeLessThanOrEqual(10)
    // Bounded, yet nothing invalidated during the read slips through.
    for (let i = 0; i < 1000; i += 37) expect(fence.isFenced(`k${i}`, open)).toBe(true)
    fence.end()
    expect(fence.trackedKeys).toBe(0)
  })

  it('re-invalidating a tracked key does not grow the record set', () => {
    const fence = new InvalidationFence()
    fence.begin()
    for (let i = 0; i < 100; i++) fence.invalidate('same')
    expect(fence.trackedKeys).toBe(1)
    fence.end()
  })
})
