import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../../src/errors'
import { PrefixTrie } from '../../src/invalidation/prefix-trie'

const sorted = (keys: Iterable<string>) => [...keys].sort()

interface InspectedNode {
  label: string
  terminal: boolean
  children: Map<number, InspectedNode> | undefined
}

/**
 * Checks the radix invariants through the private root: labels are non-empty and keyed by their
 * first code unit, and every node below the root is a key or forks (no dead or chain nodes, which
 * would be a leak). Returns the node count.
 */
function checkShape(trie: PrefixTrie): number {
  const root = (trie as unknown as { root: InspectedNode }).root
  let nodes = 0
  const stack: [InspectedNode, boolean][] = [[root, true]]
  while (stack.length > 0) {
    const [node, isRoot] = stack.pop()!
    nodes++
    if (!isRoot) {
      expect(node.label.length).toBeGreaterThan(0)
      expect(node.terminal || (node.children?.size ?? 0) >= 2).toBe(true)
    }
    if (node.children !== undefined) expect(node.children.size).toBeGreaterThan(0)
    for (const [code, child] of node.children ?? []) {
      expect(child.label.charCodeAt(0)).toBe(code)
      stack.push([child, false])
    }
  }
  return nodes
}

describe('PrefixTrie', () => {
  it('adds, finds and deletes keys', () => {
    const trie = new PrefixTrie()
    expect(trie.size).toBe(0)
    trie.add('user:1').add('user:12').add('user:2').add('order:1')
    expect(trie.size).toBe(4)
    expect(trie.has('user:1')).toBe(true)
    expect(trie.has('user:')).toBe(false)
    expect(trie.has('user:123')).toBe(false)
    expect(trie.delete('user:1')).toBe(true)
    expect(trie.delete('user:1')).toBe(false)
    expect(trie.delete('nope')).toBe(false)
    expect(trie.has('user:1')).toBe(false)
    expect(trie.has('user:12')).toBe(true)
    expect(trie.size).toBe(3)
    checkShape(trie)
  })

  it('adding a key twice keeps one copy', () => {
    const trie = new PrefixTrie()
    trie.add('a').add('a')
    expect(trie.size).toBe(1)
    expect(trie.keysWithPrefix('')).toEqual(['a'])
  })

  it('lists keys by prefix, including a prefix that ends inside an edge', () => {
    const trie = new PrefixTrie()
    for (const key of ['user:1', 'user:12', 'user:2', 'users', 'order:1']) trie.add(key)
    expect(sorted(trie.keysWithPrefix('user:'))).toEqual(['user:1', 'user:12', 'user:2'])
    expect(sorted(trie.keysWithPrefix('user:1'))).toEqual(['user:1', 'user:12'])
    expect(sorted(trie.keysWithPrefix('us'))).toEqual(['user:1', 'user:12', 'user:2', 'users'])
    expect(sorted(trie.keysWithPrefix('o'))).toEqual(['order:1'])
    expect(trie.keysWithPrefix('order:12')).toEqual([])
    expect(trie.keysWithPrefix('x')).toEqual([])
    expect(trie.keysWithPrefix('user:3')).toEqual([])
    expect(sorted(trie.keysWithPrefix(''))).toEqual(['order:1', 'user:1', 'user:12', 'user:2', 'users'])
  })

  it('a key is its own prefix', () => {
    const trie = new PrefixTrie()
    trie.add('abc')
    expect(trie.keysWithPrefix('abc')).toEqual(['abc'])
    expect(trie.keysWithPrefix('abcd')).toEqual([])
  })

  it('supports the empty key', () => {
    const trie = new PrefixTrie()
    trie.add('').add('a')
    expect(trie.has('')).toBe(true)
    expect(sorted(trie.keysWithPrefix(''))).toEqual(['', 'a'])
    expect(trie.keysWithPrefix('a')).toEqual(['a'])
    expect(trie.delete('')).toBe(true)
    expect(trie.keysWithPrefix('')).toEqual(['a'])
  })

  it('handles any code unit, including NUL and astral characters', () => {
    const trie = new PrefixTrie()
    for (const key of ['a\u0000b', 'a', '😀x', '😀y', 'é']) trie.add(key)
    expect(trie.keysWithPrefix('a')).toHaveLength(2)
    expect(trie.has('a\u0000')).toBe(false)
    expect(sorted(trie.keysWithPrefix('😀'))).toEqual(['😀x', '😀y'])
    expect(sorted(trie.keysWithPrefix('\ud83d'))).toEqual(['😀x', '😀y'])
    expect(trie.keysWithPrefix('é')).toEqual(['é'])
  })

  it('keys that look like Object.prototype members are ordinary keys', () => {
    const trie = new PrefixTrie()
    trie.add('__proto__').add('constructor').add('toString')
    expect(trie.has('__proto__')).toBe(true)
    expect(trie.has('valueOf')).toBe(false)
    expect(sorted(trie.keysWithPrefix(''))).toEqual(['__proto__', 'constructor', 'toString'])
  })

  it('deletePrefix removes and returns exactly the keys under the prefix', () => {
    const trie = new PrefixTrie()
    for (const key of ['t1:a', 't1:b', 't1:b:c', 't10:a', 't2:a']) trie.add(key)
    expect(sorted(trie.deletePrefix('t1:'))).toEqual(['t1:a', 't1:b', 't1:b:c'])
    expect(trie.size).toBe(2)
    expect(sorted(trie.keysWithPrefix(''))).toEqual(['t10:a', 't2:a'])
    expect(trie.has('t1:a')).toBe(false)
    expect(trie.deletePrefix('t1:')).toEqual([])
    expect(trie.deletePrefix('zzz')).toEqual([])
    checkShape(trie)
  })

  it('deletePrefix ending inside an edge removes the whole subtree', () => {
    const trie = new PrefixTrie()
    for (const key of ['session:abc', 'session:abd', 'sess']) trie.add(key)
    expect(sorted(trie.deletePrefix('sessi'))).toEqual(['session:abc', 'session:abd'])
    expect(trie.keysWithPrefix('')).toEqual(['sess'])
    expect(trie.size).toBe(1)
    checkShape(trie)
  })

  it("deletePrefix('') empties the trie", () => {
    const trie = new PrefixTrie()
    for (const key of ['a', 'b', 'ab']) trie.add(key)
    expect(sorted(trie.deletePrefix(''))).toEqual(['a', 'ab', 'b'])
    expect(trie.size).toBe(0)
    expect(trie.keysWithPrefix('')).toEqual([])
    trie.add('c')
    expect(trie.keysWithPrefix('')).toEqual(['c'])
  })

  it('clear forgets everything', () => {
    const trie = new PrefixTrie()
    trie.add('a').add('b')
    trie.clear()
    expect(trie.size).toBe(0)
    expect(trie.has('a')).toBe(false)
    expect(trie.keysWithPrefix('')).toEqual([])
  })

  it('merges chains back after deletes, so node count tracks the live keys', () => {
    const trie = new PrefixTrie()
    const keys = Array.from({ length: 2000 }, (_, i) => `tenant:${i % 7}:user:${i}`)
    for (const key of keys) trie.add(key)
    for (const key of keys.slice(0, 1990)) trie.delete(key)
    expect(trie.size).toBe(10)
    expect(checkShape(trie)).toBeLessThanOrEqual(2 * 10 + 1)
  })

  it('answers prefix queries on a large trie without visiting unrelated keys', () => {
    const trie = new PrefixTrie({ maxKeys: 200_000 })
    for (let i = 0; i < 100_000; i++) trie.add(`k:${i}`)
    expect(trie.size).toBe(100_000)
    expect(sorted(trie.keysWithPrefix('k:9999'))).toEqual([
      'k:9999',
      'k:99990',
      'k:99991',
      'k:99992',
      'k:99993',
      'k:99994',
      'k:99995',
      'k:99996',
      'k:99997',
      'k:99998',
      'k:99999',
    ])
    expect(trie.deletePrefix('k:1')).toHaveLength(11_111)
    expect(trie.size).toBe(100_000 - 11_111)
  })

  it('handles a very long key and deep chains without recursion', () => {
    const trie = new PrefixTrie()
    const long = 'x'.repeat(20_000)
    for (let i = 1; i <= 200; i++) trie.add(long.slice(0, i * 100))
    expect(trie.keysWithPrefix(long.slice(0, 19_950))).toEqual([long])
    expect(trie.deletePrefix('x')).toHaveLength(200)
  })

  describe('bound', () => {
    it('evicts the oldest key beyond maxKeys and reports it', () => {
      const evicted: string[] = []
      const trie = new PrefixTrie({ maxKeys: 3, onEvict: (key) => evicted.push(key) })
      trie.add('a').add('b').add('c')
      expect(evicted).toEqual([])
      trie.add('d')
      expect(evicted).toEqual(['a'])
      expect(trie.has('a')).toBe(false)
      expect(trie.size).toBe(3)
      expect(sorted(trie.keysWithPrefix(''))).toEqual(['b', 'c', 'd'])
    })

    it('re-adding a key makes it the newest', () => {
      const evicted: string[] = []
      const trie = new PrefixTrie({ maxKeys: 2, onEvict: (key) => evicted.push(key) })
      trie.add('a').add('b').add('a').add('c')
      expect(evicted).toEqual(['b'])
      expect(sorted(trie.keysWithPrefix(''))).toEqual(['a', 'c'])
    })

    it('the callback may call back into the trie', () => {
      const trie: PrefixTrie = new PrefixTrie({ maxKeys: 1, onEvict: (key) => trie.delete(key) })
      trie.add('a').add('b')
      expect(trie.keysWithPrefix('')).toEqual(['b'])
    })

    it('defaults to 100 000 keys', () => {
      let evictions = 0
      const trie = new PrefixTrie({ onEvict: () => evictions++ })
      for (let i = 0; i <= 100_000; i++) trie.add(`k${i}`)
      expect(trie.size).toBe(100_000)
      expect(evictions).toBe(1)
      expect(trie.has('k0')).toBe(false)
    })

    it.each([
      [{ maxKeys: 0 }, /maxKeys/],
      [{ maxKeys: 1.5 }, /maxKeys/],
      [{ maxKeys: -1 }, /maxKeys/],
      [{ onEvict: 'no' }, /onEvict must be a function/],
      [{ maxkeys: 10 }, /unknown option "maxkeys"/],
    ])('rejects bad options %o', (options, message) => {
      expect(() => new PrefixTrie(options as never)).toThrow(InvalidOptionError)
      expect(() => new PrefixTrie(options as never)).toThrow(message)
    })
  })

  describe('against a Set model', () => {
    const keyArb = fc.string({ unit: fc.constantFrom('a', 'b', 'c', ':'), maxLength: 6 })
    const opArb = fc.oneof(
      { arbitrary: fc.record({ op: fc.constant('add' as const), key: keyArb }), weight: 5 },
      { arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('has' as const), key: keyArb }), weight: 1 },
      { arbitrary: fc.record({ op: fc.constant('keysWithPrefix' as const), key: keyArb }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('deletePrefix' as const), key: keyArb }), weight: 1 },
      { arbitrary: fc.record({ op: fc.constant('clear' as const), key: fc.constant('') }), weight: 1 },
    )

    it('agrees with a Set + startsWith filter after every operation', () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
          const trie = new PrefixTrie()
          const model = new Set<string>()
          const withPrefix = (prefix: string) => sorted([...model].filter((key) => key.startsWith(prefix)))
          for (const { op, key } of ops) {
            if (op === 'add') {
              trie.add(key)
              model.add(key)
            } else if (op === 'delete') {
              expect(trie.delete(key)).toBe(model.delete(key))
            } else if (op === 'has') {
              expect(trie.has(key)).toBe(model.has(key))
            } else if (op === 'keysWithPrefix') {
              expect(sorted(trie.keysWithPrefix(key))).toEqual(withPrefix(key))
            } else if (op === 'deletePrefix') {
              const expected = withPrefix(key)
              for (const gone of expected) model.delete(gone)
              expect(sorted(trie.deletePrefix(key))).toEqual(expected)
            } else {
              trie.clear()
              model.clear()
            }
            expect(trie.size).toBe(model.size)
          }
          expect(sorted(trie.keysWithPrefix(''))).toEqual(sorted(model))
          for (const key of model) expect(trie.has(key)).toBe(true)
          checkShape(trie)
        }),
        { numRuns: 500, seed: 4242 },
      )
    })

    it('evicts exactly what an insertion-ordered model evicts', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 5 }), fc.array(opArb, { maxLength: 60 }), (maxKeys, ops) => {
          const evicted: string[] = []
          const trie = new PrefixTrie({ maxKeys, onEvict: (key) => evicted.push(key) })
          const model = new Set<string>()
          const modelEvicted: string[] = []
          for (const { op, key } of ops) {
            if (op === 'add') {
              trie.add(key)
              model.delete(key)
              model.add(key)
              if (model.size > maxKeys) {
                const oldest = model.values().next().value as string
                model.delete(oldest)
                modelEvicted.push(oldest)
              }
            } else if (op === 'delete' || op === 'has') {
              expect(trie.delete(key)).toBe(model.delete(key))
            } else if (op === 'deletePrefix' || op === 'keysWithPrefix') {
              const expected = sorted([...model].filter((k) => k.startsWith(key)))
              for (const gone of expected) model.delete(gone)
              expect(sorted(trie.deletePrefix(key))).toEqual(expected)
            } else {
              trie.clear()
              model.clear()
            }
            expect(trie.size).toBeLessThanOrEqual(maxKeys)
          }
          expect(evicted).toEqual(modelEvicted)
          expect(sorted(trie.keysWithPrefix(''))).toEqual(sorted(model))
          checkShape(trie)
        }),
        { numRuns: 300, seed: 77 },
      )
    })
  })
})
