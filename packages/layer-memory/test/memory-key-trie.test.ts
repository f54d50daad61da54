import { createEntry, type KeyMatch, keyMatcher, type LayerWriteOptions } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { useFakeClock } from '@layercache/test-utils/fake-clock'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'

function write(
  layer: MemoryLayer,
  key: string,
  value: unknown = key,
  options: LayerWriteOptions = {},
  tags?: readonly string[],
): void {
  layer.prepareWrites([{ key, entry: createEntry(value, options.ttl, tags), options }])()
}

const sorted = (keys: Iterable<string>) => [...keys].sort()

/** Keys with glob specials, Redis-glob specials and non-ASCII characters. */
const SEMANTIC_KEYS = [
  'user:1:item:a',
  'user:2:item:',
  'user:é:item:x',
  'user:😀:item:x', // two UTF-16 code units: `?` does not match it
  'user:12:item:a',
  'user:1:items',
  'user:[:item:1',
  'user:1',
  'user:10',
  'account:1:item:a',
  'a[bc]1',
  'ab1',
  'x\\y',
  'x*',
  'ten*ant:1',
  'ten*ant:2:x',
  'tenXant:1',
  't[1]:a',
  't1:a',
  'é:1',
  'éa',
  'q?',
  'qa',
  '',
]

describe('MemoryLayer.invalidateKeys', () => {
  it('a prefix removes and returns exactly the keys starting with it', () => {
    const layer = new MemoryLayer()
    const keys = ['user:1:a', 'user:1:b', 'user:1:', 'user:10', 'user:2:a', 'account:user:1:a', 'user:']
    for (const key of keys) write(layer, key)
    expect(sorted(layer.invalidateKeys({ scope: 'user:1:' }))).toEqual(['user:1:', 'user:1:a', 'user:1:b'])
    expect(sorted(layer.keys())).toEqual(['account:user:1:a', 'user:', 'user:10', 'user:2:a'])
    expect(layer.has('user:1:a')).toBe(false)
    expect(layer.invalidateKeys({ scope: 'user:1:' })).toEqual([])
    expect(layer.invalidateKeys({ scope: 'nobody' })).toEqual([])
    expect(sorted(layer.invalidateKeys({ scope: 'user:' }))).toEqual(['user:', 'user:10', 'user:2:a'])
    expect(layer.invalidateKeys({ scope: '' })).toEqual(['account:user:1:a'])
    expect(layer.size).toBe(0)
  })

  it('a pattern follows compileGlob: only * and ? are wildcards, [ ] \\ are literal, ? is one UTF-16 unit', () => {
    const cases: [KeyMatch, string[]][] = [
      [
        { scope: '', pattern: 'user:?:item:*' },
        ['user:1:item:a', 'user:2:item:', 'user:[:item:1', 'user:é:item:x'],
      ],
      [{ scope: '', pattern: 'user:??:item:*' }, ['user:12:item:a', 'user:😀:item:x']],
      [{ scope: '', pattern: 'a[bc]*' }, ['a[bc]1']],
      [{ scope: '', pattern: 'x\\*' }, ['x\\y']],
      [{ scope: '', pattern: 'q?' }, ['q?', 'qa']],
      [{ scope: '', pattern: '*' }, SEMANTIC_KEYS],
      [{ scope: '', pattern: '?*' }, SEMANTIC_KEYS.filter((key) => key !== '')],
      [
        { scope: 'user:', pattern: '1*' },
        ['user:1', 'user:1:item:a', 'user:1:items', 'user:10', 'user:12:item:a'],
      ],
      [{ scope: '', pattern: '*:1' }, ['tenXant:1', 'ten*ant:1', 'user:1', 'user:[:item:1', 'é:1']],
      [
        { scope: 'user:', pattern: '*:item:?' },
        ['user:1:item:a', 'user:12:item:a', 'user:[:item:1', 'user:é:item:x', 'user:😀:item:x'],
      ],
    ]
    for (const [match, expected] of cases) {
      const layer = new MemoryLayer()
      for (const key of SEMANTIC_KEYS) write(layer, key)
      // The expectations are the glob's own answers, spelled out.
      expect(sorted(SEMANTIC_KEYS.filter(keyMatcher(match))), JSON.stringify(match)).toEqual(sorted(expected))
      expect(sorted(layer.invalidateKeys(match)), JSON.stringify(match)).toEqual(sorted(expected))
      expect(sorted(layer.keys()), JSON.stringify(match)).toEqual(
        sorted(SEMANTIC_KEYS.filter((key) => !expected.includes(key))),
      )
    }
  })

  it('a scope is literal: *, ?, [ ] in it match only themselves, also with a pattern after it', () => {
    const cases: [KeyMatch, string[]][] = [
      [{ scope: 'ten*ant:' }, ['ten*ant:1', 'ten*ant:2:x']],
      [{ scope: 'ten*ant:', pattern: '?' }, ['ten*ant:1']],
      [{ scope: 't[1]:' }, ['t[1]:a']],
      [{ scope: 'q?' }, ['q?']],
      [{ scope: 'x\\' }, ['x\\y']],
      [{ scope: 'é' }, ['é:1', 'éa']],
      [{ scope: 'user:😀' }, ['user:😀:item:x']],
    ]
    for (const [match, expected] of cases) {
      const layer = new MemoryLayer()
      for (const key of SEMANTIC_KEYS) write(layer, key)
      expect(sorted(layer.invalidateKeys(match)), JSON.stringify(match)).toEqual(sorted(expected))
      expect(layer.size).toBe(SEMANTIC_KEYS.length - expected.length)
    }
  })

  it('the lazily built trie holds the keys written before its first use, and keeps up afterwards', () => {
    const layer = new MemoryLayer()
    const before = Array.from({ length: 50 }, (_, i) => `k:${i}`)
    for (const key of before) write(layer, key)
    expect(layer.invalidateKeys({ scope: 'other:' })).toEqual([]) // builds the trie
    const after = Array.from({ length: 20 }, (_, i) => `k:after:${i}`)
    for (const key of after) write(layer, key)
    write(layer, 'k:1', 'overwritten') // an overwrite is still one key
    write(layer, 'k:after:1', 'overwritten')
    expect(sorted(layer.invalidateKeys({ scope: 'k:', pattern: 'after:*' }))).toEqual(sorted(after))
    expect(sorted(layer.invalidateKeys({ scope: 'k:' }))).toEqual(sorted(before))
    expect(layer.size).toBe(0)
    // Written again after being invalidated: found again.
    write(layer, 'k:1')
    expect(layer.invalidateKeys({ scope: 'k:' })).toEqual(['k:1'])
  })

  it('keys evicted by the LRU (maxSize) are not returned, whether evicted before or after the trie was built', () => {
    const layer = new MemoryLayer({ maxSize: 3 })
    write(layer, 'a')
    write(layer, 'b')
    write(layer, 'c')
    layer.get('a') // a is now more recent than b
    write(layer, 'd') // evicts b, before the trie exists
    expect(sorted(layer.invalidateKeys({ scope: 'x' }))).toEqual([])
    expect(sorted(layer.keys())).toEqual(['a', 'c', 'd'])
    write(layer, 'e') // evicts c, with the trie kept in step by the LRU's dispose hook
    write(layer, 'f') // evicts a
    expect(sorted(layer.keys())).toEqual(['d', 'e', 'f'])
    expect(sorted(layer.invalidateKeys({ scope: '' }))).toEqual(['d', 'e', 'f'])
    // Many evictions in a row, then a pattern.
    for (let i = 0; i < 100; i++) write(layer, `n:${i}`)
    expect(sorted(layer.invalidateKeys({ scope: 'n:', pattern: '*' }))).toEqual(['n:97', 'n:98', 'n:99'])
  })

  it('keys evicted for bytes (maxBytes, maxEntryBytes) are not returned', () => {
    const layer = new MemoryLayer({ maxBytes: 2000, maxEntryBytes: 1000 })
    layer.invalidateKeys({ scope: 'build' })
    const value = { text: 'x'.repeat(200) }
    for (let i = 0; i < 30; i++) write(layer, `b:${i}`, value)
    const live = sorted(layer.keys())
    expect(live.length).toBeLessThan(30)
    expect(live.length).toBeGreaterThan(0)
    // An overwrite too large for maxEntryBytes drops the key it replaces.
    const victim = live[0]!
    write(layer, victim, { text: 'y'.repeat(5000) })
    expect(layer.has(victim)).toBe(false)
    expect(sorted(layer.invalidateKeys({ scope: 'b:' }))).toEqual(live.filter((key) => key !== victim))
  })

  it('deleted keys are not returned', () => {
    const layer = new MemoryLayer()
    for (const key of ['d:1', 'd:2', 'd:3', 'd:4']) write(layer, key)
    layer.delete('d:1') // before the trie exists
    layer.invalidateKeys({ scope: 'nothing' })
    layer.delete('d:2') // after
    layer.deleteMany(['d:3', 'missing'])
    expect(layer.invalidateKeys({ scope: 'd:' })).toEqual(['d:4'])
  })

  it('keys removed by a tag invalidation are not returned', () => {
    const layer = new MemoryLayer()
    layer.invalidateKeys({ scope: 'nothing' })
    write(layer, 't:1', 1, {}, ['red'])
    write(layer, 't:2', 2, {}, ['blue'])
    write(layer, 't:3', 3)
    expect(layer.invalidateTags(['red'], 'any')).toEqual(['t:1'])
    expect(sorted(layer.invalidateKeys({ scope: 't:' }))).toEqual(['t:2', 't:3'])
    // And the other way round: a key removed by prefix no longer answers to its tag.
    write(layer, 't:4', 4, {}, ['blue'])
    expect(layer.invalidateKeys({ scope: 't:4' })).toEqual(['t:4'])
    expect(layer.invalidateTags(['blue'], 'any')).toEqual([])
  })

  it('cleared keys are not returned; keys written after the clear are', () => {
    const layer = new MemoryLayer()
    for (const key of ['c:1', 'c:2']) write(layer, key)
    layer.invalidateKeys({ scope: 'nothing' })
    write(layer, 'c:3')
    layer.clear()
    expect(layer.invalidateKeys({ scope: 'c:' })).toEqual([])
    write(layer, 'c:4')
    expect(layer.invalidateKeys({ scope: '' })).toEqual(['c:4'])
  })

  it('a write dropped by stillValid is not indexed', () => {
    const layer = new MemoryLayer()
    layer.invalidateKeys({ scope: 'nothing' })
    write(layer, 's:1', 1, { stillValid: () => false })
    write(layer, 's:2', 2, { stillValid: () => true })
    expect(layer.invalidateKeys({ scope: 's:' })).toEqual(['s:2'])
  })

  describe('expired keys', () => {
    let clock: ReturnType<typeof useFakeClock> | undefined
    afterEach(() => {
      clock?.restore()
      clock = undefined
    })

    it('are not returned when the trie is first built after they expired', () => {
      clock = useFakeClock()
      const layer = new MemoryLayer()
      write(layer, 'e:short', 1, { ttl: 100 })
      write(layer, 'e:long', 2, { ttl: 1000 })
      write(layer, 'e:forever', 3)
      clock.advance(101)
      expect(sorted(layer.invalidateKeys({ scope: 'e:' }))).toEqual(['e:forever', 'e:long'])
    })

    it('are not returned once a read noticed they expired', () => {
      clock = useFakeClock()
      const layer = new MemoryLayer()
      layer.invalidateKeys({ scope: 'nothing' })
      write(layer, 'e:short', 1, { ttl: 100 })
      write(layer, 'e:forever', 3)
      clock.advance(101)
      expect(layer.get('e:short')).toBeUndefined()
      expect(layer.invalidateKeys({ scope: 'e:' })).toEqual(['e:forever'])
    })

    it('are not returned when they expired after the trie was built (and nothing read them since)', () => {
      clock = useFakeClock()
      const layer = new MemoryLayer()
      layer.invalidateKeys({ scope: 'nothing' }) // the trie now exists and follows the LRU
      write(layer, 'e:short', 1, { ttl: 100 })
      write(layer, 'e:long', 2, { ttl: 1000 })
      write(layer, 'e:forever', 3)
      clock.advance(100)
      // Still live at exactly its ttl.
      expect(layer.invalidateKeys({ scope: 'e:', pattern: 's*' })).toEqual(['e:short'])
      write(layer, 'e:short', 1, { ttl: 100 })
      clock.advance(101)
      expect(layer.has('e:short')).toBe(false)
      expect(sorted(layer.keys())).toEqual(['e:forever', 'e:long'])
      // The layer no longer holds e:short, so an invalidation must not report removing it.
      expect(sorted(layer.invalidateKeys({ scope: 'e:' }))).toEqual(['e:forever', 'e:long'])
    })
  })

  describe('against a naive model (fast-check)', () => {
    const unit = fc.constantFrom('a', 'b', ':', '*', '?', 'é')
    const keyArb = fc.string({ unit, minLength: 1, maxLength: 4 })
    const matchArb: fc.Arbitrary<KeyMatch> = fc.record(
      {
        scope: fc.string({ unit, maxLength: 3 }),
        pattern: fc.string({ unit, minLength: 1, maxLength: 4 }),
      },
      { requiredKeys: ['scope'] },
    )
    const tagArb = fc.constantFrom('red', 'blue')
    type Op =
      | { op: 'set'; key: string; tag: string | undefined }
      | { op: 'get' | 'delete'; key: string }
      | { op: 'invalidate'; match: KeyMatch }
      | { op: 'invalidateTag'; tag: string }
      | { op: 'clear' }
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      {
        arbitrary: fc.record({
          op: fc.constant('set' as const),
          key: keyArb,
          tag: fc.option(tagArb, { nil: undefined }),
        }),
        weight: 6,
      },
      { arbitrary: fc.record({ op: fc.constant('get' as const), key: keyArb }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('invalidate' as const), match: matchArb }), weight: 3 },
      { arbitrary: fc.record({ op: fc.constant('invalidateTag' as const), tag: tagArb }), weight: 1 },
      { arbitrary: fc.constant({ op: 'clear' as const }), weight: 1 },
    )

    it('invalidateKeys returns and removes exactly the live keys keyMatcher accepts (LRU bound included)', () => {
      fc.assert(
        fc.property(
          fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
          fc.array(opArb, { maxLength: 80 }),
          (maxSize, ops) => {
            const layer = new MemoryLayer(maxSize === undefined ? {} : { maxSize })
            // Insertion order = recency order (oldest first), like the LRU; the value is the key's tag.
            const model = new Map<string, string | undefined>()
            const touch = (key: string, tag: string | undefined) => {
              model.delete(key)
              model.set(key, tag)
              if (maxSize !== undefined && model.size > maxSize)
                model.delete(model.keys().next().value as string)
            }
            for (const step of ops) {
              if (step.op === 'set') {
                write(layer, step.key, step.key, {}, step.tag === undefined ? undefined : [step.tag])
                touch(step.key, step.tag)
              } else if (step.op === 'get') {
                expect(layer.get(step.key)?.value).toBe(model.has(step.key) ? step.key : undefined)
                if (model.has(step.key)) touch(step.key, model.get(step.key))
              } else if (step.op === 'delete') {
                layer.delete(step.key)
                model.delete(step.key)
              } else if (step.op === 'invalidate') {
                const expected = sorted([...model.keys()].filter(keyMatcher(step.match)))
                for (const key of expected) model.delete(key)
                expect(sorted(layer.invalidateKeys(step.match))).toEqual(expected)
              } else if (step.op === 'invalidateTag') {
                const expected = sorted([...model].filter(([, tag]) => tag === step.tag).map(([key]) => key))
                for (const key of expected) model.delete(key)
                expect(sorted(layer.invalidateTags([step.tag], 'any'))).toEqual(expected)
              } else {
                layer.clear()
                model.clear()
              }
              expect(sorted(layer.keys())).toEqual(sorted(model.keys()))
            }
            expect(sorted(layer.invalidateKeys({ scope: '' }))).toEqual(sorted(model.keys()))
            expect(layer.size).toBe(0)
          },
        ),
        { numRuns: 400, seed: 20_240_611 },
      )
    })

    it('with TTLs on a fake clock, returns only keys that are still live', () => {
      type TimedOp = Op | { op: 'setTtl'; key: string; ttl: number } | { op: 'advance'; ms: number }
      const timedArb: fc.Arbitrary<TimedOp> = fc.oneof(
        { arbitrary: opArb, weight: 6 },
        {
          arbitrary: fc.record({
            op: fc.constant('setTtl' as const),
            key: keyArb,
            ttl: fc.constantFrom(10, 20, 30),
          }),
          weight: 4,
        },
        {
          arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(5, 10, 15) }),
          weight: 3,
        },
      )
      const clock = useFakeClock()
      try {
        fc.assert(
          fc.property(fc.array(timedArb, { maxLength: 80 }), (ops) => {
            // No size bound: whether an expired entry still takes a slot is the LRU's business, not observable here.
            const layer = new MemoryLayer()
            // Key → [expiresAt (Infinity: never), tag]; a key is live while now <= expiresAt.
            const model = new Map<string, [number, string | undefined]>()
            const live = () =>
              [...model].filter(([, [expiresAt]]) => Date.now() <= expiresAt).map(([key]) => key)
            for (const step of ops) {
              if (step.op === 'set') {
                write(layer, step.key, step.key, {}, step.tag === undefined ? undefined : [step.tag])
                model.set(step.key, [Number.POSITIVE_INFINITY, step.tag])
              } else if (step.op === 'setTtl') {
                write(layer, step.key, step.key, { ttl: step.ttl })
                model.set(step.key, [Date.now() + step.ttl, undefined])
              } else if (step.op === 'advance') {
                clock.advance(step.ms)
              } else if (step.op === 'get') {
                const alive = live().includes(step.key)
                expect(layer.get(step.key)?.value).toBe(alive ? step.key : undefined)
              } else if (step.op === 'delete') {
                layer.delete(step.key)
                model.delete(step.key)
              } else if (step.op === 'invalidate') {
                const expected = sorted(live().filter(keyMatcher(step.match)))
                for (const key of [...model.keys()].filter(keyMatcher(step.match))) model.delete(key)
                expect(sorted(layer.invalidateKeys(step.match))).toEqual(expected)
              } else if (step.op === 'invalidateTag') {
                // Untimed entries only carry tags here, so expiry cannot blur this answer.
                const expected = sorted(
                  [...model].filter(([, [, tag]]) => tag === step.tag).map(([key]) => key),
                )
                for (const key of expected) model.delete(key)
                expect(sorted(layer.invalidateTags([step.tag], 'any'))).toEqual(expected)
              } else {
                layer.clear()
                model.clear()
              }
              expect(sorted(layer.keys())).toEqual(sorted(live()))
            }
            expect(sorted(layer.invalidateKeys({ scope: '' }))).toEqual(sorted(live()))
          }),
          { numRuns: 300, seed: 20_240_612 },
        )
      } finally {
        clock.restore()
      }
    })
  })
})
