import {
  createEntry,
  InvalidOptionError,
  InvalidTtlError,
  InvalidValueError,
  LayerCacheError,
  type LayerWriteOptions,
  MAX_TTL_MS,
} from '@layercache/core'
import { estimateBytes, MemoryLayer, type MemoryLayerOptions } from '@layercache/layer-memory'
import { useFakeClock } from '@layercache/test-utils/fake-clock'
import { afterEach, describe, expect, it } from 'vitest'

function write(layer: MemoryLayer, key: string, value: unknown, options: LayerWriteOptions = {}): void {
  layer.prepareWrites([{ key, entry: createEntry(value, options.ttl), options }])()
}

function deepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true
  if (!Object.isFrozen(value)) return false
  return Object.values(value).every(deepFrozen)
}

describe('MemoryLayer contract', () => {
  it('has sensible defaults', () => {
    const layer = new MemoryLayer()
    expect(layer.name).toBe('memory')
    expect(layer.local).toBe(true)
    expect(layer.ttl).toBeUndefined()
    expect(layer.protection).toBe('freeze')
    expect(layer.size).toBe(0)
    expect(layer.bytes).toBe(0)
  })

  it('stores, reads, lists and removes entries', () => {
    const layer = new MemoryLayer({ name: 'l1' })
    expect(layer.name).toBe('l1')
    write(layer, 'a', 1)
    write(layer, 'b', { two: 2 })
    write(layer, 'c', null)
    expect(layer.get('a')).toMatchObject({ value: 1, expiresAt: 0 })
    expect(layer.getMany(['a', 'x', 'b', 'c'])).toMatchObject([
      { value: 1 },
      undefined,
      { value: { two: 2 } },
      { value: null },
    ])
    expect(layer.has('c')).toBe(true)
    expect(layer.has('x')).toBe(false)
    expect([...layer.keys()].sort()).toEqual(['a', 'b', 'c'])
    expect(layer.size).toBe(3)
    layer.delete('a')
    layer.delete('never-there')
    expect(layer.has('a')).toBe(false)
    layer.deleteMany(['b', 'zzz'])
    expect([...layer.keys()]).toEqual(['c'])
    layer.clear()
    expect(layer.size).toBe(0)
    expect(layer.get('c')).toBeUndefined()
  })

  it('keeps the tags of an entry', () => {
    const layer = new MemoryLayer()
    layer.prepareWrites([{ key: 'k', entry: createEntry('v', undefined, ['t1', 't2']) }])()
    expect(layer.get('k')?.tags).toEqual(['t1', 't2'])
  })

  it('prepareWrites has no effect until its commit runs, then writes the whole batch', () => {
    const layer = new MemoryLayer()
    write(layer, 'a', 'old')
    const commit = layer.prepareWrites([
      { key: 'a', entry: createEntry('new', undefined) },
      { key: 'b', entry: createEntry('b', undefined) },
    ])
    expect(layer.get('a')?.value).toBe('old')
    expect(layer.has('b')).toBe(false)
    commit()
    expect(layer.get('a')?.value).toBe('new')
    expect(layer.get('b')?.value).toBe('b')
  })

  it('prepareWrites throws a typed error for a bad entry and stores none of the batch', () => {
    const layer = new MemoryLayer()
    write(layer, 'a', 'old')
    expect(() =>
      layer.prepareWrites([
        { key: 'a', entry: createEntry('new', undefined) },
        { key: 'b', entry: createEntry({ fn: () => 1 }, undefined) },
      ]),
    ).toThrow(InvalidValueError)
    expect(layer.get('a')?.value).toBe('old')
    expect(layer.has('b')).toBe(false)
  })

  it('drops a write whose stillValid() says no at commit time and keeps what was there', () => {
    const layer = new MemoryLayer()
    write(layer, 'k', 'current')
    let valid = true
    const commit = layer.prepareWrites([
      { key: 'k', entry: createEntry('stale', undefined), options: { stillValid: () => valid } },
    ])
    valid = false // an invalidation landed between prepare and commit
    commit()
    expect(layer.get('k')?.value).toBe('current')
    write(layer, 'k', 'fresh', { stillValid: () => true })
    expect(layer.get('k')?.value).toBe('fresh')
  })
})

describe('MemoryLayer TTL', () => {
  let clock: ReturnType<typeof useFakeClock> | undefined
  afterEach(() => {
    clock?.restore()
    clock = undefined
  })

  it('expires an entry after its ttl', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer()
    write(layer, 'k', 'v', { ttl: 100 })
    expect(layer.get('k')?.expiresAt).toBe(Date.now() + 100)
    clock.advance(100)
    expect(layer.get('k')?.value).toBe('v')
    clock.advance(1)
    expect(layer.get('k')).toBeUndefined()
    expect(layer.has('k')).toBe(false)
  })

  it('caps an entry ttl with the layer ttl, and a shorter entry ttl wins', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer({ ttl: 100 })
    write(layer, 'long', 1, { ttl: 5000 })
    write(layer, 'short', 2, { ttl: 20 })
    write(layer, 'none', 3)
    const now = Date.now()
    expect(layer.get('long')?.expiresAt).toBe(now + 100)
    expect(layer.get('short')?.expiresAt).toBe(now + 20)
    expect(layer.get('none')?.expiresAt).toBe(now + 100)
    clock.advance(21)
    expect(layer.getMany(['long', 'short', 'none']).map((e) => e?.value)).toEqual([1, undefined, 3])
    clock.advance(80)
    expect(layer.getMany(['long', 'short', 'none']).map((e) => e?.value)).toEqual([
      undefined,
      undefined,
      undefined,
    ])
  })

  it('keeps entries without any ttl', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer()
    write(layer, 'k', 'v')
    expect(layer.get('k')?.expiresAt).toBe(0)
    clock.advance(30 * 24 * 60 * 60 * 1000)
    expect(layer.get('k')?.value).toBe('v')
  })

  it('an overwrite restarts the ttl', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer()
    write(layer, 'k', 'v1', { ttl: 100 })
    clock.advance(80)
    write(layer, 'k', 'v2', { ttl: 100 })
    clock.advance(80)
    expect(layer.get('k')?.value).toBe('v2')
    clock.advance(21)
    expect(layer.get('k')).toBeUndefined()
  })
})

describe('MemoryLayer bounds', () => {
  it('maxSize evicts the least recently used entry', () => {
    const layer = new MemoryLayer({ maxSize: 3 })
    write(layer, 'a', 1)
    write(layer, 'b', 2)
    write(layer, 'c', 3)
    layer.get('a') // a is now more recent than b
    write(layer, 'd', 4)
    expect(layer.size).toBe(3)
    expect([...layer.keys()].sort()).toEqual(['a', 'c', 'd'])
    write(layer, 'c', 33) // an overwrite does not grow the layer
    expect(layer.size).toBe(3)
    write(layer, 'e', 5)
    expect([...layer.keys()].sort()).toEqual(['c', 'd', 'e'])
  })

  it('holds at most 10 000 entries by default', () => {
    const layer = new MemoryLayer()
    for (let i = 0; i <= 10_000; i++) write(layer, `k${i}`, i)
    expect(layer.size).toBe(10_000)
    expect(layer.has('k0')).toBe(false)
    expect(layer.has('k10000')).toBe(true)
  })

  it('maxBytes keeps the estimated bytes within the bound, evicting the oldest entries', () => {
    const layer = new MemoryLayer({ maxBytes: 4000 })
    const value = { text: 'x'.repeat(200), n: 1 }
    for (let i = 0; i < 100; i++) {
      write(layer, `k${i}`, value)
      expect(layer.bytes).toBeLessThanOrEqual(4000)
      expect(layer.has(`k${i}`)).toBe(true)
    }
    expect(layer.size).toBeLessThan(100)
    expect(layer.size).toBeGreaterThan(1)
    expect(layer.has('k0')).toBe(false)
    expect(layer.bytes).toBeGreaterThanOrEqual(layer.size * estimateBytes(value))
  })

  it('tracks bytes as entries come and go', () => {
    const layer = new MemoryLayer({ maxBytes: 100_000 })
    write(layer, 'a', 'x'.repeat(100))
    const one = layer.bytes
    expect(one).toBeGreaterThanOrEqual(estimateBytes('x'.repeat(100)))
    write(layer, 'b', 'x'.repeat(100))
    expect(layer.bytes).toBe(one * 2)
    write(layer, 'a', 'x'.repeat(1000)) // overwrite with a larger value
    expect(layer.bytes).toBeGreaterThan(one * 2)
    layer.delete('a')
    expect(layer.bytes).toBe(one)
    layer.clear()
    expect(layer.bytes).toBe(0)
  })

  it('maxEntryBytes skips oversized entries and removes an older value under that key', () => {
    const layer = new MemoryLayer({ maxEntryBytes: 1000 })
    write(layer, 'k', 'small')
    write(layer, 'other', 'kept')
    expect(layer.get('k')?.value).toBe('small')
    write(layer, 'k', 'x'.repeat(2000))
    expect(layer.get('k')).toBeUndefined()
    expect(layer.has('k')).toBe(false)
    expect(layer.get('other')?.value).toBe('kept')
    expect(layer.bytes).toBeLessThanOrEqual(1000)
  })

  it('without maxEntryBytes an entry larger than maxBytes is skipped too', () => {
    const layer = new MemoryLayer({ maxBytes: 1000 })
    write(layer, 'small', 1)
    write(layer, 'k', 'old')
    write(layer, 'k', 'x'.repeat(5000))
    expect(layer.has('k')).toBe(false)
    expect(layer.get('small')?.value).toBe(1)
    expect(layer.bytes).toBeLessThanOrEqual(1000)
  })

  it('reports 0 bytes when no byte bound is set', () => {
    const layer = new MemoryLayer({ maxSize: 10 })
    write(layer, 'k', 'x'.repeat(1000))
    expect(layer.bytes).toBe(0)
  })
})

describe("MemoryLayer protection 'freeze' (default)", () => {
  it("stores a deep-frozen copy and never freezes the caller's object", () => {
    const layer = new MemoryLayer()
    const original = { user: { name: 'Ada', roles: ['admin'] }, n: 1 }
    write(layer, 'k', original)
    expect(Object.isFrozen(original)).toBe(false)
    expect(Object.isFrozen(original.user)).toBe(false)
    expect(Object.isFrozen(original.user.roles)).toBe(false)
    const stored = layer.get('k')?.value as typeof original
    expect(stored).not.toBe(original)
    expect(stored).toEqual(original)
    expect(deepFrozen(stored)).toBe(true)
    // The caller changing its own object later does not reach the cache.
    original.user.roles.push('root')
    expect(layer.get('k')?.value).toEqual({ user: { name: 'Ada', roles: ['admin'] }, n: 1 })
  })

  it('makes mutation of a returned value throw in strict mode and leaves later reads intact', () => {
    const layer = new MemoryLayer()
    write(layer, 'k', { user: { name: 'Ada' }, list: [1, 2] })
    const value = layer.get('k')?.value as { user: { name: string }; list: number[]; extra?: number }
    expect(() => {
      value.user.name = 'Eve'
    }).toThrow(TypeError)
    expect(() => value.list.push(3)).toThrow(TypeError)
    expect(() => {
      value.extra = 1
    }).toThrow(TypeError)
    expect(layer.get('k')?.value).toEqual({ user: { name: 'Ada' }, list: [1, 2] })
  })

  it('returns the same frozen object on every read (reads cost no copy)', () => {
    const layer = new MemoryLayer()
    write(layer, 'k', { a: 1 })
    expect(layer.get('k')?.value).toBe(layer.get('k')?.value)
  })

  it('freezes an owned value in place instead of copying it', () => {
    const layer = new MemoryLayer()
    const owned = { fresh: { from: 'deserialiser' } }
    write(layer, 'k', owned, { ownsValue: true })
    expect(layer.get('k')?.value).toBe(owned)
    expect(deepFrozen(owned)).toBe(true)
  })

  it('accepts dates, maps, sets and typed arrays', () => {
    const layer = new MemoryLayer()
    const value = {
      when: new Date(0),
      map: new Map([['a', 1]]),
      set: new Set([1]),
      bytes: new Uint8Array([1, 2, 3]),
    }
    write(layer, 'k', value)
    const stored = layer.get('k')?.value as typeof value
    expect(stored).toEqual(value)
    expect(stored.bytes).not.toBe(value.bytes)
    expect(stored.when).toBeInstanceOf(Date)
  })

  it("a caller changing a Date, Map, Set or typed array it read never changes the next reader's value", () => {
    const layer = new MemoryLayer()
    const value = {
      when: new Date(0),
      map: new Map([['a', { n: 1 }]]),
      set: new Set([1]),
      bytes: new Uint8Array([1, 2, 3]),
      list: [new Date(5)],
    }
    write(layer, 'k', value)
    const first = layer.get('k')?.value as typeof value
    first.when.setTime(1_000)
    first.map.set('b', { n: 2 })
    first.map.get('a')!.n = 9
    first.set.add(2)
    first.bytes[0] = 99
    first.list[0]!.setTime(7)
    expect(layer.get('k')?.value).toEqual(value)
    expect(layer.getMany(['k'])[0]?.value).toEqual(value)
    // Also when the value is a bare Date, and when the layer owns the value it was given.
    const read = <T>(key: string) => layer.get(key)!.value as T
    write(layer, 'd', new Date(0))
    read<Date>('d').setTime(1)
    expect(read<Date>('d').getTime()).toBe(0)
    const owned = { when: new Date(0) }
    write(layer, 'o', owned, { ownsValue: true })
    owned.when.setTime(1)
    read<typeof owned>('o').when.setTime(2)
    expect(read<typeof owned>('o').when.getTime()).toBe(0)
  })

  it('passes primitives through', () => {
    const layer = new MemoryLayer()
    for (const value of [0, 'text', true, null, 12n]) {
      write(layer, 'k', value)
      expect(layer.get('k')?.value).toBe(value)
    }
  })
})

describe("MemoryLayer protection 'clone'", () => {
  it('returns a distinct, equal, mutable copy on every read', () => {
    const layer = new MemoryLayer({ protection: 'clone' })
    const original = { list: [1, 2] }
    write(layer, 'k', original)
    const first = layer.get('k')?.value as typeof original
    const second = layer.get('k')?.value as typeof original
    expect(first).toEqual(original)
    expect(first).not.toBe(second)
    expect(first).not.toBe(original)
    expect(Object.isFrozen(first)).toBe(false)
    first.list.push(3)
    original.list.push(4)
    expect(layer.get('k')?.value).toEqual({ list: [1, 2] })
    expect(layer.getMany(['k'])[0]?.value).toEqual({ list: [1, 2] })
  })

  it('copies even an owned value (the writer gets that object back)', () => {
    const layer = new MemoryLayer({ protection: 'clone' })
    const owned = { a: 1 }
    write(layer, 'k', owned, { ownsValue: true })
    owned.a = 2
    expect(layer.get('k')?.value).toEqual({ a: 1 })
    expect(Object.isFrozen(owned)).toBe(false)
  })
})

describe("MemoryLayer protection 'none'", () => {
  it('stores and returns the very same reference', () => {
    const layer = new MemoryLayer({ protection: 'none' })
    const original = { a: 1, fn: () => 1 }
    write(layer, 'k', original)
    expect(layer.get('k')?.value).toBe(original)
    expect(Object.isFrozen(original)).toBe(false)
  })
})

describe('MemoryLayer values structuredClone cannot copy', () => {
  for (const protection of ['freeze', 'clone'] as const) {
    it(`'${protection}' refuses nested functions, symbols and weak maps with InvalidValueError`, () => {
      const layer = new MemoryLayer({ protection })
      write(layer, 'k', 'old')
      for (const value of [{ fn: () => 1 }, [{ s: Symbol('s') }], { w: new WeakMap() }]) {
        let error: unknown
        try {
          write(layer, 'k', value)
        } catch (e) {
          error = e
        }
        expect(error).toBeInstanceOf(InvalidValueError)
        expect((error as LayerCacheError).code).toBe('INVALID_VALUE')
        expect(layer.get('k')?.value).toBe('old')
      }
    })

    it(`'${protection}' refuses a top-level function or symbol like a nested one`, () => {
      const layer = new MemoryLayer({ protection })
      for (const value of [() => 1, Symbol('s')]) {
        expect(() => write(layer, 'k', value)).toThrow(InvalidValueError)
        expect(layer.has('k')).toBe(false)
      }
    })
  }
})

describe('MemoryLayer options', () => {
  const refused: [string, unknown, abstract new (...args: never[]) => LayerCacheError][] = [
    ['an unknown option', { maxEntries: 5 }, InvalidOptionError],
    ['options that are a string', 'fast', InvalidOptionError],
    ['options that are null', null, InvalidOptionError],
    ['options that are an array', [], InvalidOptionError],
    ['an empty name', { name: '' }, InvalidOptionError],
    ['a non-string name', { name: 5 }, InvalidOptionError],
    ['ttl 0', { ttl: 0 }, InvalidTtlError],
    ['a negative ttl', { ttl: -5 }, InvalidTtlError],
    ['a fractional ttl', { ttl: 1.5 }, InvalidTtlError],
    ['a string ttl', { ttl: '100' }, InvalidTtlError],
    ['a ttl over MAX_TTL_MS', { ttl: MAX_TTL_MS + 1 }, InvalidTtlError],
    ['an unknown protection', { protection: 'deep' }, InvalidOptionError],
    ['maxSize 0', { maxSize: 0 }, InvalidOptionError],
    ['a negative maxSize', { maxSize: -1 }, InvalidOptionError],
    ['a fractional maxSize', { maxSize: 1.5 }, InvalidOptionError],
    ['a string maxSize', { maxSize: '10' }, InvalidOptionError],
    ['a NaN maxSize', { maxSize: Number.NaN }, InvalidOptionError],
    ['maxBytes 0', { maxBytes: 0 }, InvalidOptionError],
    ['an infinite maxBytes', { maxBytes: Infinity }, InvalidOptionError],
    ['a negative maxEntryBytes', { maxEntryBytes: -1 }, InvalidOptionError],
    ['maxEntryBytes above maxBytes', { maxBytes: 100, maxEntryBytes: 101 }, InvalidOptionError],
  ]
  it.each(refused)('refuses %s', (_label, options, type) => {
    let error: unknown
    try {
      new MemoryLayer(options as MemoryLayerOptions)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(type)
    expect(error).toBeInstanceOf(LayerCacheError)
    expect((error as LayerCacheError).code).toBe(type === InvalidTtlError ? 'INVALID_TTL' : 'INVALID_OPTION')
  })

  it('accepts valid options', () => {
    const layer = new MemoryLayer({
      name: 'hot',
      ttl: 1000,
      maxSize: 5,
      maxBytes: 100,
      maxEntryBytes: 100,
      protection: 'clone',
    })
    expect(layer).toMatchObject({ name: 'hot', ttl: 1000, protection: 'clone' })
    expect(new MemoryLayer({ protection: 'none' }).protection).toBe('none')
    expect(new MemoryLayer({ maxEntryBytes: 10 }).bytes).toBe(0)
  })
})
