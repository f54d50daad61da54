import { type CacheEntry, CacheStack, createEntry, type LayerWriteOptions } from '@layercache/core'
import { MemoryLayer, type MemoryLayerOptions } from '@layercache/layer-memory'
import { type FakeClock, useFakeClock } from '@layercache/test-utils/fake-clock'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'

function write(
  layer: MemoryLayer,
  key: string,
  entry: CacheEntry | unknown,
  options: LayerWriteOptions = {},
): void {
  const full = isEntry(entry) ? entry : createEntry(entry, options.ttl)
  layer.prepareWrites([{ key, entry: full, options }])()
}

function isEntry(value: unknown): value is CacheEntry {
  return typeof value === 'object' && value !== null && 'expiresAt' in value && 'value' in value
}

/** What peek answers for `key`, told apart as the stack tells it apart. */
function peeked(layer: MemoryLayer, key: string): { bare: unknown } | { entry: CacheEntry } | undefined {
  const found = layer.peek(key)
  if (found === undefined) return undefined
  return layer.isEntry(found) ? { entry: found } : { bare: found }
}

describe('MemoryLayer storage: plain entries are kept as their bare value', () => {
  let clock: FakeClock | undefined
  afterEach(() => {
    clock?.restore()
    clock = undefined
  })

  it('peek answers the value itself, get a whole entry with the expiry lru-cache keeps', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer({ ttl: 1000 })
    write(layer, 'k', { n: 1 }, { ttl: 100 })
    write(layer, 'forever', 'text', {})
    write(layer, 'capped', 7, { ttl: 5000 })
    const stored = layer.get('k')!
    expect(peeked(layer, 'k')).toEqual({ bare: { n: 1 } })
    expect(layer.peek('k')).toBe(stored.value)
    expect(stored).toMatchObject({ value: { n: 1 }, expiresAt: Date.now() + 100 })
    expect(stored.tags).toBeUndefined()
    expect(stored.freshUntil).toBeUndefined()
    expect(layer.get('forever')).toMatchObject({ value: 'text', expiresAt: Date.now() + 1000 })
    expect(layer.get('capped')?.expiresAt).toBe(Date.now() + 1000)
    expect(new MemoryLayer().peek('none')).toBeUndefined()
    clock.advance(101)
    expect(layer.peek('k')).toBeUndefined()
    expect(layer.get('k')).toBeUndefined()
  })

  it('an entry without any TTL reads back with expiresAt 0', () => {
    const layer = new MemoryLayer()
    write(layer, 'k', 1)
    expect(peeked(layer, 'k')).toEqual({ bare: 1 })
    expect(layer.get('k')).toMatchObject({ value: 1, expiresAt: 0 })
  })

  it('keeps whole the entries that carry more than a value: tags, freshness, a negative answer, null', () => {
    clock = useFakeClock()
    const layer = new MemoryLayer()
    const now = Date.now()
    const entries: Record<string, CacheEntry> = {
      tagged: { value: 1, expiresAt: 0, tags: ['t'] },
      fresh: { value: 2, expiresAt: now + 500, freshUntil: now + 100, createdAt: now, loadMs: 3 },
      absent: { value: null, expiresAt: 0, absent: true },
      nullValue: { value: null, expiresAt: 0 },
    }
    for (const [key, entry] of Object.entries(entries)) write(layer, key, entry)
    for (const [key, entry] of Object.entries(entries)) {
      const found = peeked(layer, key)
      expect(found && 'entry' in found, key).toBe(true)
      const { tags, freshUntil, createdAt, loadMs, absent } = layer.get(key)!
      expect({ value: layer.get(key)!.value, tags, freshUntil, createdAt, loadMs, absent }, key).toEqual({
        value: entry.value,
        tags: entry.tags,
        freshUntil: entry.freshUntil,
        createdAt: entry.createdAt,
        loadMs: entry.loadMs,
        absent: entry.absent,
      })
    }
  })

  it("never takes a value that is itself a layer's entry for an entry (protection 'none')", async () => {
    const layer = new MemoryLayer({ protection: 'none' })
    write(layer, 'tagged', { value: 'inner', expiresAt: 0, tags: ['t'] })
    const entryObject = layer.get('tagged')!
    write(layer, 'k', createEntry(entryObject, undefined))
    const found = peeked(layer, 'k')
    expect(found && 'entry' in found && found.entry.value).toBe(entryObject)
    expect(await new CacheStack([layer]).get('k')).toBe(entryObject)
  })

  it('peek and isEntry agree with get through any mix of writes, deletes, evictions, expiry and refusals', () => {
    type Op =
      | { kind: 'plain' | 'tagged' | 'big'; key: number; ttl: number | undefined }
      | { kind: 'delete'; key: number }
      | { kind: 'advance'; ms: number }
      | { kind: 'clear' }
    const key = fc.integer({ min: 0, max: 5 })
    const ttl = fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined })
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constantFrom('plain' as const, 'tagged' as const, 'big' as const), key, ttl }),
      fc.record({ kind: fc.constant('delete' as const), key }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 30 }) }),
      fc.record({ kind: fc.constant('clear' as const) }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const fake = useFakeClock()
        try {
          // maxSize 4 over 6 keys evicts; maxEntryBytes refuses the big values.
          const options: MemoryLayerOptions = { maxSize: 4, maxEntryBytes: 400 }
          const layer = new MemoryLayer(options)
          for (const step of ops) {
            if (step.kind === 'delete') layer.delete(`k${step.key}`)
            else if (step.kind === 'advance') fake.advance(step.ms)
            else if (step.kind === 'clear') layer.clear()
            else {
              const value = step.kind === 'big' ? { text: 'x'.repeat(500) } : { n: step.key }
              const tags = step.kind === 'plain' ? undefined : ['t']
              write(layer, `k${step.key}`, createEntry(value, step.ttl, tags), { ttl: step.ttl })
            }
            for (let k = 0; k <= 5; k++) {
              const full = layer.get(`k${k}`)
              const found = peeked(layer, `k${k}`)
              if (full === undefined) expect(found).toBeUndefined()
              else if (full.tags === undefined) expect(found).toEqual({ bare: full.value })
              else expect(found && 'entry' in found && found.entry.tags).toEqual(['t'])
            }
          }
        } finally {
          fake.restore()
        }
      }),
      { numRuns: 150 },
    )
  })
})

describe('MemoryLayer resolved answers', () => {
  it('hands every hit on a kept entry the same frozen promise of its value', async () => {
    const layer = new MemoryLayer()
    write(layer, 'k', { value: { n: 1 }, expiresAt: 0, tags: ['t'] })
    const entry = layer.peek('k') as CacheEntry
    const first = layer.resolved(entry)
    expect(layer.resolved(layer.peek('k') as CacheEntry)).toBe(first)
    expect(Object.isFrozen(first)).toBe(true)
    expect(await first).toBe(entry.value)
  })

  it('hands each read of an entry copied on read its own copy', async () => {
    const layer = new MemoryLayer({ protection: 'clone' })
    write(layer, 'k', { n: 1 })
    const found = layer.peek('k')
    expect(layer.isEntry(found)).toBe(true)
    const [a, b] = await Promise.all([
      layer.resolved(found as CacheEntry),
      layer.resolved(found as CacheEntry),
    ])
    expect(a).toEqual({ n: 1 })
    expect(a).not.toBe(b)
  })

  it('a reader cannot tamper with the promise the next reader gets', async () => {
    const cache = new CacheStack([new MemoryLayer()], { staleWhileRevalidate: 1000, ttl: 60_000 })
    await cache.getOrSet('k', () => ({ n: 1 }))
    const hit = cache.getOrSet('k', () => ({ n: 2 }))
    expect(() => Object.defineProperty(hit, 'then', { value: () => 'tampered' })).toThrow(TypeError)
    expect(await cache.getOrSet('k', () => ({ n: 3 }))).toEqual({ n: 1 })
    expect(await cache.get('k')).toEqual({ n: 1 })
  })
})
