import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../../src/errors'
import { DependencyGraph } from '../../src/invalidation/dependency-graph'

const sorted = (items: Iterable<string>) => [...items].sort()

describe('DependencyGraph', () => {
  it('records direct dependencies both ways', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('page:home', ['product:1', 'product:2'])
    graph.setDependencies('list:featured', ['product:1'])
    expect(graph.size).toBe(2)
    expect(graph.has('page:home')).toBe(true)
    expect(graph.has('product:1')).toBe(false)
    expect(sorted(graph.dependenciesOf('page:home'))).toEqual(['product:1', 'product:2'])
    expect(sorted(graph.dependentsOf('product:1'))).toEqual(['list:featured', 'page:home'])
    expect(graph.dependentsOf('product:2')).toEqual(['page:home'])
    expect(graph.dependentsOf('page:home')).toEqual([])
    expect(graph.dependenciesOf('unknown')).toEqual([])
  })

  it('setDependencies replaces the previous edges', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('a', ['x', 'y'])
    graph.setDependencies('a', ['y', 'z'])
    expect(graph.dependentsOf('x')).toEqual([])
    expect(graph.dependentsOf('y')).toEqual(['a'])
    expect(graph.dependentsOf('z')).toEqual(['a'])
    graph.setDependencies('a', [])
    expect(graph.has('a')).toBe(false)
    expect(graph.dependentsOf('y')).toEqual([])
  })

  it('delete removes only the key’s own edges', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('b', ['a'])
    graph.setDependencies('c', ['b'])
    expect(graph.delete('b')).toBe(true)
    expect(graph.delete('b')).toBe(false)
    expect(graph.dependentsOf('a')).toEqual([])
    // c still depends on b: when b changes again, c must go too.
    expect(graph.dependentsOf('b')).toEqual(['c'])
    expect(graph.closure(['b'])).toEqual(['c'])
  })

  it('closure follows dependents transitively and excludes the inputs', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('b', ['a'])
    graph.setDependencies('c', ['b'])
    graph.setDependencies('d', ['c', 'x'])
    graph.setDependencies('e', ['x'])
    expect(sorted(graph.closure(['a']))).toEqual(['b', 'c', 'd'])
    expect(sorted(graph.closure(['c']))).toEqual(['d'])
    expect(sorted(graph.closure(['x']))).toEqual(['d', 'e'])
    expect(sorted(graph.closure(['a', 'x']))).toEqual(['b', 'c', 'd', 'e'])
    expect(sorted(graph.closure(['a', 'b']))).toEqual(['c', 'd'])
    expect(graph.closure(['d'])).toEqual([])
    expect(graph.closure(['unknown'])).toEqual([])
    expect(graph.closure([])).toEqual([])
  })

  it('closure reports each key once even when reachable by several paths', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('b', ['a'])
    graph.setDependencies('c', ['a'])
    graph.setDependencies('d', ['b', 'c'])
    const closure = graph.closure(['a', 'a'])
    expect(sorted(closure)).toEqual(['b', 'c', 'd'])
    expect(closure).toHaveLength(3)
  })

  it('terminates on cycles and never returns the inputs', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('a', ['b'])
    graph.setDependencies('b', ['a'])
    graph.setDependencies('self', ['self'])
    expect(graph.closure(['a'])).toEqual(['b'])
    expect(graph.closure(['b'])).toEqual(['a'])
    expect(graph.closure(['self'])).toEqual([])
    graph.setDependencies('c', ['b'])
    expect(sorted(graph.closure(['a']))).toEqual(['b', 'c'])
  })

  it('walks a 100 000-long chain without overflowing the stack', () => {
    const graph = new DependencyGraph({ maxKeys: 200_000 })
    for (let i = 1; i <= 100_000; i++) graph.setDependencies(`n${i}`, [`n${i - 1}`])
    const closure = graph.closure(['n0'])
    expect(closure).toHaveLength(100_000)
    expect(closure[0]).toBe('n1')
    expect(closure[99_999]).toBe('n100000')
    // Close the loop: still terminates, still excludes the input.
    graph.setDependencies('n0', ['n100000'])
    expect(graph.closure(['n0'])).toHaveLength(100_000)
  })

  it('clear forgets everything', () => {
    const graph = new DependencyGraph()
    graph.setDependencies('b', ['a'])
    graph.clear()
    expect(graph.size).toBe(0)
    expect(graph.closure(['a'])).toEqual([])
  })

  describe('bound', () => {
    it('drops the oldest-tracked key beyond maxKeys and asks the owner to drop it too', () => {
      const evicted: string[] = []
      const graph = new DependencyGraph({ maxKeys: 2, onEvict: (key) => evicted.push(key) })
      graph.setDependencies('b', ['a'])
      graph.setDependencies('c', ['a'])
      graph.setDependencies('b', ['a', 'z'])
      expect(evicted).toEqual([])
      graph.setDependencies('d', ['a'])
      expect(evicted).toEqual(['c'])
      expect(graph.size).toBe(2)
      expect(sorted(graph.closure(['a']))).toEqual(['b', 'd'])
    })

    it('the callback may call back into the graph', () => {
      const graph: DependencyGraph = new DependencyGraph({
        maxKeys: 1,
        onEvict: (key) => {
          expect(graph.has(key)).toBe(false)
          graph.delete(key)
        },
      })
      graph.setDependencies('b', ['a'])
      graph.setDependencies('c', ['a'])
      expect(graph.closure(['a'])).toEqual(['c'])
    })

    it('defaults to 100 000 keys', () => {
      const evicted: string[] = []
      const graph = new DependencyGraph({ onEvict: (key) => evicted.push(key) })
      for (let i = 0; i <= 100_000; i++) graph.setDependencies(`k${i}`, ['root'])
      expect(graph.size).toBe(100_000)
      expect(evicted).toEqual(['k0'])
    })

    it.each([
      [{ maxKeys: -5 }, /maxKeys/],
      [{ maxKeys: '10' }, /maxKeys/],
      [{ onEvict: {} }, /onEvict must be a function/],
      [{ onevict: () => {} }, /unknown option "onevict"/],
    ])('rejects bad options %o', (options, message) => {
      expect(() => new DependencyGraph(options as never)).toThrow(InvalidOptionError)
      expect(() => new DependencyGraph(options as never)).toThrow(message)
    })
  })

  describe('against a naive model', () => {
    const NODES = ['a', 'b', 'c', 'd', 'e', 'f']
    const nodeArb = fc.constantFrom(...NODES)
    const opArb = fc.oneof(
      {
        arbitrary: fc.record({
          op: fc.constant('set' as const),
          key: nodeArb,
          deps: fc.array(nodeArb, { maxLength: 4 }),
        }),
        weight: 6,
      },
      {
        arbitrary: fc.record({ op: fc.constant('delete' as const), key: nodeArb, deps: fc.constant([]) }),
        weight: 1,
      },
    )

    /** Plain BFS over the model's edge list, re-scanning every edge at each step. */
    function naiveClosure(model: Map<string, Set<string>>, inputs: readonly string[]): string[] {
      const reached = new Set<string>()
      let frontier = new Set(inputs)
      while (frontier.size > 0) {
        const next = new Set<string>()
        for (const [key, deps] of model) {
          if (reached.has(key) || frontier.has(key)) continue
          for (const dep of deps) if (frontier.has(dep)) next.add(key)
        }
        for (const key of next) reached.add(key)
        frontier = next
      }
      for (const input of inputs) reached.delete(input)
      return sorted(reached)
    }

    it('direct dependents and closures agree with BFS on random graphs with cycles', () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { maxLength: 30 }),
          fc.array(fc.array(nodeArb, { maxLength: 3 }), { minLength: 1, maxLength: 4 }),
          (ops, queries) => {
            const graph = new DependencyGraph()
            const model = new Map<string, Set<string>>()
            for (const { op, key, deps } of ops) {
              if (op === 'set') {
                graph.setDependencies(key, deps)
                if (deps.length === 0) model.delete(key)
                else model.set(key, new Set(deps))
              } else {
                expect(graph.delete(key)).toBe(model.delete(key))
              }
            }
            const actual = {
              size: graph.size,
              dependents: NODES.map((node) => sorted(graph.dependentsOf(node))),
              dependencies: NODES.map((node) => sorted(graph.dependenciesOf(node))),
              closures: NODES.map((node) => sorted(graph.closure([node]))),
              queries: queries.map((inputs) => sorted(graph.closure(inputs))),
              duplicates: queries.filter(
                (inputs) => new Set(graph.closure(inputs)).size !== graph.closure(inputs).length,
              ),
            }
            const expected = {
              size: model.size,
              dependents: NODES.map((node) =>
                sorted([...model].filter(([, deps]) => deps.has(node)).map(([key]) => key)),
              ),
              dependencies: NODES.map((node) => sorted(model.get(node) ?? [])),
              closures: NODES.map((node) => naiveClosure(model, [node])),
              queries: queries.map((inputs) => naiveClosure(model, inputs)),
              duplicates: [],
            }
            expect(actual).toEqual(expected)
          },
        ),
        { numRuns: 300, seed: 31337 },
      )
    })

    it('with a bound, evicts oldest-first and keeps only tracked edges', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 4 }), fc.array(opArb, { maxLength: 30 }), (maxKeys, ops) => {
          const evicted: string[] = []
          const graph = new DependencyGraph({ maxKeys, onEvict: (key) => evicted.push(key) })
          const model = new Map<string, Set<string>>()
          const modelEvicted: string[] = []
          for (const { op, key, deps } of ops) {
            if (op === 'set') {
              graph.setDependencies(key, deps)
              const known = model.has(key)
              model.delete(key)
              if (deps.length > 0) model.set(key, new Set(deps))
              if (!known && model.size > maxKeys) {
                const oldest = model.keys().next().value as string
                model.delete(oldest)
                modelEvicted.push(oldest)
              }
            } else {
              expect(graph.delete(key)).toBe(model.delete(key))
            }
            expect(graph.size).toBeLessThanOrEqual(maxKeys)
          }
          expect(evicted).toEqual(modelEvicted)
          for (const node of NODES) expect(sorted(graph.closure([node]))).toEqual(naiveClosure(model, [node]))
        }),
        { numRuns: 300, seed: 2718 },
      )
    })
  })
})
