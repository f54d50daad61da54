import { createEntry, InvalidValueError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { describe, expect, it } from 'vitest'

function stored<T>(value: T, protection: 'freeze' | 'clone' = 'freeze'): T {
  const layer = new MemoryLayer({ protection })
  layer.prepareWrites([{ key: 'k', entry: createEntry(value, undefined) }])()
  return layer.get('k')!.value as T
}

function deepFrozen(value: unknown, seen = new Set<unknown>()): boolean {
  if (value === null || typeof value !== 'object' || seen.has(value)) return true
  seen.add(value)
  return Object.isFrozen(value) && Object.values(value).every((part) => deepFrozen(part, seen))
}

describe('memory protection copies what structuredClone copies', () => {
  for (const protection of ['freeze', 'clone'] as const) {
    describe(protection, () => {
      it('keeps a part met twice as one shared part, and cycles', () => {
        const shared = { n: 1 }
        const value: Record<string, unknown> = { a: shared, b: [shared, shared] }
        value.self = value
        const copy = stored(value, protection) as { a: object; b: object[]; self: unknown }
        expect(copy).not.toBe(value)
        expect(copy.a).not.toBe(shared)
        expect(copy.b[0]).toBe(copy.a)
        expect(copy.b[1]).toBe(copy.a)
        expect(copy.self).toBe(copy)
        expect(copy.a).toEqual({ n: 1 })
        if (protection === 'freeze') expect(deepFrozen(copy)).toBe(true)
      })

      it('keeps an own "__proto__" property a property, leaving the prototype alone', () => {
        const value = JSON.parse('{"__proto__": {"polluted": true}, "n": 1}') as object
        const copy = stored(value, protection)
        expect(Object.getPrototypeOf(copy)).toBe(Object.prototype)
        expect(Object.hasOwn(copy, '__proto__')).toBe(true)
        expect(Object.getOwnPropertyDescriptor(copy, '__proto__')?.value).toEqual({ polluted: true })
        expect((copy as { polluted?: boolean }).polluted).toBeUndefined()
      })

      it('copies own enumerable string-keyed properties only, reading getters once', () => {
        let reads = 0
        const value: Record<string | symbol, unknown> = { plain: 1 }
        value[Symbol('hidden')] = 2
        Object.defineProperty(value, 'quiet', { value: 3, enumerable: false })
        Object.defineProperty(value, 'computed', {
          get: () => ++reads,
          enumerable: true,
        })
        const copy = stored(value, protection)
        expect(copy).toEqual({ plain: 1, computed: 1 })
        expect(Object.getOwnPropertySymbols(copy)).toEqual([])
        expect(Object.getOwnPropertyDescriptor(copy, 'computed')).toMatchObject({ value: 1 })
        expect(reads).toBe(1)
      })

      it('keeps holes in arrays, and copies a sparse array without walking its length', () => {
        // biome-ignore lint/suspicious/noSparseArray: the hole is the point
        const holey = stored({ list: [1, , 3] }, protection).list
        expect(holey).toHaveLength(3)
        expect(1 in holey).toBe(false)
        const sparse: number[] = []
        sparse[0] = 1
        sparse[1_000_000_000] = 2
        const copy = stored(sparse, protection)
        expect(copy.length).toBe(1_000_000_001)
        expect(copy[1_000_000_000]).toBe(2)
      })

      it('copies a class instance, a Date or a Map inside plain data as structuredClone does', () => {
        class Point {
          constructor(readonly x: number) {}
        }
        const value = { at: new Point(1), when: new Date(5), map: new Map([['a', [1]]]), list: [{ n: 1 }] }
        const copy = stored(value, protection)
        expect(Object.getPrototypeOf(copy.at)).toBe(Object.prototype)
        expect(copy.at).toEqual({ x: 1 })
        expect(copy.when).toEqual(new Date(5))
        expect(copy.when).not.toBe(value.when)
        expect(copy.map.get('a')).toEqual([1])
        expect(copy.list[0]).not.toBe(value.list[0])
      })

      it('keeps a Buffer a Buffer wherever it is, as the Redis copy (msgpack) reads back', () => {
        // structuredClone alone turns a Buffer into a plain Uint8Array: toString() then lists numbers.
        const key = Buffer.from('key')
        const shared = Buffer.from('shared')
        const value = {
          b: Buffer.from('hi'),
          bytes: new Uint8Array([1]),
          list: [Buffer.from('in a list'), shared, shared],
          map: new Map<unknown, unknown>([
            ['k', Buffer.from('a map value')],
            [key, 1],
          ]),
          set: new Set([Buffer.from('in a set')]),
          when: new Date(5),
        }
        const layer = new MemoryLayer({ protection })
        layer.prepareWrites([{ key: 'k', entry: createEntry(value, undefined) }])()
        // Each read of a value holding binary data is a copy of its own: both must be right.
        for (let read = 0; read < 2; read++) {
          const copy = layer.get('k')!.value as typeof value
          expect(Buffer.isBuffer(copy.b)).toBe(true)
          expect(copy.b.toString()).toBe('hi')
          expect(copy.b).not.toBe(value.b)
          expect(Buffer.isBuffer(copy.bytes)).toBe(false)
          expect(copy.list.map((part) => [Buffer.isBuffer(part), part.toString()])).toEqual([
            [true, 'in a list'],
            [true, 'shared'],
            [true, 'shared'],
          ])
          expect(Buffer.isBuffer(copy.map.get('k'))).toBe(true)
          expect(String(copy.map.get('k'))).toBe('a map value')
          const [copiedKey] = [...copy.map.keys()].filter((k) => k !== 'k')
          expect(Buffer.isBuffer(copiedKey)).toBe(true)
          expect(String(copiedKey)).toBe('key')
          const [member] = [...copy.set]
          expect([Buffer.isBuffer(member), String(member)]).toEqual([true, 'in a set'])
          expect(copy.when).toEqual(new Date(5))
        }
      })

      it('refuses a function or symbol anywhere in plain data with InvalidValueError', () => {
        const layer = new MemoryLayer({ protection })
        for (const bad of [
          { a: 1, b: [1, 2, { deep: [() => 1] }] },
          [{ ok: true }, { s: Symbol('s') }],
          { a: { b: { c: { d: () => 1 } } } },
        ]) {
          expect(() => layer.prepareWrites([{ key: 'k', entry: createEntry(bad, undefined) }])).toThrow(
            InvalidValueError,
          )
        }
      })
    })
  }
})
