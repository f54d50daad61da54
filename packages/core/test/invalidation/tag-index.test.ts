import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../../src/errors'
import { MemoryTagIndex } from '../../src/invalidation/tag-index'

const sorted = (items: Iterable<string>) => [...items].sort()

describe('MemoryTagIndex', () => {
  it('indexes keys by tag both ways', () => {
    const index = new MemoryTagIndex()
    index.set('p:1', ['product', 'brand:acme'])
    index.set('p:2', ['product'])
    expect(index.size).toBe(2)
    expect(index.tagCount).toBe(2)
    expect(index.has('p:1')).toBe(true)
    expect(sorted(index.tagsOf('p:1'))).toEqual(['brand:acme', 'product'])
    expect(sorted(index.keysForTag('product'))).toEqual(['p:1', 'p:2'])
    expect(index.keysForTag('brand:acme')).toEqual(['p:1'])
    expect(index.keysForTag('unknown')).toEqual([])
    expect(index.tagsOf('unknown')).toEqual([])
  })

  it('set replaces the previous memberships of a key', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a', 'b'])
    index.set('k', ['b', 'c'])
    expect(sorted(index.tagsOf('k'))).toEqual(['b', 'c'])
    expect(index.keysForTag('a')).toEqual([])
    expect(index.keysForTag('b')).toEqual(['k'])
    expect(index.keysForTag('c')).toEqual(['k'])
    expect(index.tagCount).toBe(2)
  })

  it('setting no tags forgets the key', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a'])
    index.set('k', [])
    expect(index.has('k')).toBe(false)
    expect(index.size).toBe(0)
    expect(index.keysForTag('a')).toEqual([])
    index.set('never', [])
    expect(index.size).toBe(0)
  })

  it('delete cleans every membership and drops empty tags', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a', 'b'])
    index.set('other', ['b'])
    expect(index.delete('k')).toBe(true)
    expect(index.delete('k')).toBe(false)
    expect(index.tagsOf('k')).toEqual([])
    expect(index.keysForTag('a')).toEqual([])
    expect(index.keysForTag('b')).toEqual(['other'])
    expect(index.tagCount).toBe(1)
  })

  it('counts duplicate tags once', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a', 'a', 'b'])
    expect(sorted(index.tagsOf('k'))).toEqual(['a', 'b'])
    index.delete('k')
    expect(index.tagCount).toBe(0)
  })

  it('does not keep a reference to the caller’s array', () => {
    const index = new MemoryTagIndex()
    const tags = ['a']
    index.set('k', tags)
    tags.push('b')
    expect(index.tagsOf('k')).toEqual(['a'])
    expect(index.keysForTag('b')).toEqual([])
  })

  it("keysForTags 'any' is the union, 'all' the intersection", () => {
    const index = new MemoryTagIndex()
    index.set('1', ['red', 'small'])
    index.set('2', ['red', 'large'])
    index.set('3', ['blue', 'small'])
    index.set('4', ['red', 'small', 'round'])
    expect(sorted(index.keysForTags(['red', 'small'], 'any'))).toEqual(['1', '2', '3', '4'])
    expect(sorted(index.keysForTags(['red', 'small'], 'all'))).toEqual(['1', '4'])
    expect(sorted(index.keysForTags(['small', 'red', 'round'], 'all'))).toEqual(['4'])
    expect(index.keysForTags(['red', 'missing'], 'all')).toEqual([])
    expect(sorted(index.keysForTags(['red', 'missing'], 'any'))).toEqual(['1', '2', '4'])
    expect(sorted(index.keysForTags(['red', 'red'], 'all'))).toEqual(['1', '2', '4'])
    expect(sorted(index.keysForTags(['blue']))).toEqual(['3'])
  })

  it('no tags match no key, in either mode', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a'])
    expect(index.keysForTags([], 'any')).toEqual([])
    expect(index.keysForTags([], 'all')).toEqual([])
  })

  it("'all' scans only the smallest tag set", () => {
    const index = new MemoryTagIndex({ maxKeys: 200_000 })
    for (let i = 0; i < 50_000; i++) index.set(`k${i}`, i % 10_000 === 0 ? ['big', 'rare'] : ['big'])
    expect(sorted(index.keysForTags(['big', 'rare'], 'all'))).toEqual([
      'k0',
      'k10000',
      'k20000',
      'k30000',
      'k40000',
    ])
  })

  it('rejects an unknown mode', () => {
    const index = new MemoryTagIndex()
    expect(() => index.keysForTags(['a'], 'every' as never)).toThrow(InvalidOptionError)
  })

  it('clear forgets everything', () => {
    const index = new MemoryTagIndex()
    index.set('k', ['a'])
    index.clear()
    expect(index.size).toBe(0)
    expect(index.tagCount).toBe(0)
    expect(index.keysForTag('a')).toEqual([])
  })

  describe('bound', () => {
    it('drops the oldest-tracked key beyond maxKeys and asks the owner to drop it too', () => {
      const evicted: string[] = []
      const index = new MemoryTagIndex({ maxKeys: 2, onEvict: (key) => evicted.push(key) })
      index.set('a', ['t'])
      index.set('b', ['t'])
      index.set('c', ['t', 'u'])
      expect(evicted).toEqual(['a'])
      expect(index.size).toBe(2)
      expect(index.has('a')).toBe(false)
      expect(sorted(index.keysForTag('t'))).toEqual(['b', 'c'])
    })

    it('re-setting a key makes it the newest; re-setting never evicts', () => {
      const evicted: string[] = []
      const index = new MemoryTagIndex({ maxKeys: 2, onEvict: (key) => evicted.push(key) })
      index.set('a', ['t'])
      index.set('b', ['t'])
      index.set('a', ['u'])
      expect(evicted).toEqual([])
      index.set('c', ['t'])
      expect(evicted).toEqual(['b'])
      expect(sorted(index.keysForTags(['t', 'u'], 'any'))).toEqual(['a', 'c'])
    })

    it('the callback sees a consistent index and may call back into it', () => {
      const seen: string[][] = []
      const index: MemoryTagIndex = new MemoryTagIndex({
        maxKeys: 1,
        onEvict: (key) => {
          seen.push(index.keysForTag('t'))
          index.delete(key)
        },
      })
      index.set('a', ['t'])
      index.set('b', ['t'])
      expect(seen).toEqual([['b']])
      expect(index.keysForTag('t')).toEqual(['b'])
    })

    it('defaults to 100 000 keys', () => {
      const evicted: string[] = []
      const index = new MemoryTagIndex({ onEvict: (key) => evicted.push(key) })
      for (let i = 0; i <= 100_000; i++) index.set(`k${i}`, ['t'])
      expect(index.size).toBe(100_000)
      expect(evicted).toEqual(['k0'])
    })

    it.each([
      [{ maxKeys: 0 }, /maxKeys/],
      [{ maxKeys: Number.NaN }, /maxKeys/],
      [{ onEvict: 1 }, /onEvict must be a function/],
      [{ max: 1 }, /unknown option "max"/],
    ])('rejects bad options %o', (options, message) => {
      expect(() => new MemoryTagIndex(options as never)).toThrow(InvalidOptionError)
      expect(() => new MemoryTagIndex(options as never)).toThrow(message)
    })
  })

  describe('against a Map<key, Set<tag>> model', () => {
    const keyArb = fc.constantFrom('k1', 'k2', 'k3', 'k4', 'k5', 'k6')
    const tagArb = fc.constantFrom('a', 'b', 'c', 'd')
    const tagsArb = fc.array(tagArb, { maxLength: 4 })
    const opArb = fc.oneof(
      { arbitrary: fc.record({ op: fc.constant('set' as const), key: keyArb, tags: tagsArb }), weight: 5 },
      { arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb, tags: tagsArb }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('clear' as const), key: keyArb, tags: tagsArb }), weight: 1 },
    )

    /** Every query the index answers, side by side with the model's answer (one deep comparison). */
    function checkAgainst(index: MemoryTagIndex, model: Map<string, Set<string>>, queries: string[][]): void {
      const entries = [...model]
      const keysWhere = (test: (tags: Set<string>) => boolean) =>
        sorted(entries.filter(([, tags]) => test(tags)).map(([key]) => key))
      const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6']
      const tags = ['a', 'b', 'c', 'd']
      const actual = {
        size: index.size,
        tagCount: index.tagCount,
        tagsOf: keys.map((key) => sorted(index.tagsOf(key))),
        has: keys.map((key) => index.has(key)),
        keysForTag: tags.map((tag) => sorted(index.keysForTag(tag))),
        any: queries.map((query) => sorted(index.keysForTags(query, 'any'))),
        all: queries.map((query) => sorted(index.keysForTags(query, 'all'))),
      }
      const expected = {
        size: model.size,
        tagCount: new Set(entries.flatMap(([, own]) => [...own])).size,
        tagsOf: keys.map((key) => sorted(model.get(key) ?? [])),
        has: keys.map((key) => model.has(key)),
        keysForTag: tags.map((tag) => keysWhere((own) => own.has(tag))),
        any: queries.map((query) => keysWhere((own) => query.some((tag) => own.has(tag)))),
        all: queries.map((query) =>
          query.length === 0 ? [] : keysWhere((own) => query.every((tag) => own.has(tag))),
        ),
      }
      expect(actual).toEqual(expected)
    }

    it('agrees with the model after every operation', () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { maxLength: 30 }),
          fc.array(tagsArb, { maxLength: 4 }),
          (ops, queries) => {
            const index = new MemoryTagIndex()
            const model = new Map<string, Set<string>>()
            for (const { op, key, tags } of ops) {
              if (op === 'set') {
                index.set(key, tags)
                if (tags.length === 0) model.delete(key)
                else model.set(key, new Set(tags))
              } else if (op === 'delete') {
                expect(index.delete(key)).toBe(model.delete(key))
              } else {
                index.clear()
                model.clear()
              }
              checkAgainst(index, model, queries)
            }
          },
        ),
        { numRuns: 200, seed: 1234 },
      )
    })

    it('with a bound, evicts oldest-first and never leaves an evicted key reachable', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 4 }), fc.array(opArb, { maxLength: 30 }), (maxKeys, ops) => {
          const evicted: string[] = []
          const index = new MemoryTagIndex({ maxKeys, onEvict: (key) => evicted.push(key) })
          const model = new Map<string, Set<string>>()
          const modelEvicted: string[] = []
          for (const { op, key, tags } of ops) {
            if (op === 'set') {
              index.set(key, tags)
              const known = model.has(key)
              model.delete(key)
              if (tags.length > 0) model.set(key, new Set(tags))
              if (!known && model.size > maxKeys) {
                const oldest = model.keys().next().value as string
                model.delete(oldest)
                modelEvicted.push(oldest)
              }
            } else if (op === 'delete') {
              expect(index.delete(key)).toBe(model.delete(key))
            } else {
              index.clear()
              model.clear()
            }
            expect(index.size).toBeLessThanOrEqual(maxKeys)
            checkAgainst(index, model, [['a', 'b'], ['c']])
          }
          expect(evicted).toEqual(modelEvicted)
        }),
        { numRuns: 200, seed: 5678 },
      )
    })
  })
})
