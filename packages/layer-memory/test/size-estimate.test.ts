import { estimateBytes } from '@layercache/layer-memory'
import { describe, expect, it } from 'vitest'

describe('estimateBytes', () => {
  it('gives primitives a small positive size', () => {
    for (const value of [0, 1.5, true, false, null, undefined, 10n, Symbol('s')]) {
      const size = estimateBytes(value)
      expect(size).toBeGreaterThan(0)
      expect(size).toBeLessThanOrEqual(16)
    }
  })

  it('grows with string length at about two bytes per character', () => {
    expect(estimateBytes('')).toBeGreaterThan(0)
    const small = estimateBytes('x'.repeat(10))
    const large = estimateBytes('x'.repeat(1010))
    expect(large - small).toBe(2000)
  })

  it('counts an object as more than the sum of its values', () => {
    const value = { name: 'Ada Lovelace', age: 36, tags: ['math', 'poetry'] }
    const parts = estimateBytes(value.name) + estimateBytes(value.age) + estimateBytes(value.tags)
    expect(estimateBytes(value)).toBeGreaterThan(parts)
    expect(estimateBytes({ nested: value })).toBeGreaterThan(estimateBytes(value))
  })

  it('grows with array length', () => {
    const ten = estimateBytes(Array.from({ length: 10 }, (_, i) => i))
    const thousand = estimateBytes(Array.from({ length: 1000 }, (_, i) => i))
    expect(thousand).toBeGreaterThan(ten * 50)
  })

  it('stays within a small factor of the JSON size for ordinary data', () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({
      id: i,
      sku: `SKU-${i}`,
      title: `Product number ${i}`,
      price: i * 1.25,
      inStock: i % 2 === 0,
    }))
    const json = JSON.stringify(rows).length
    const estimate = estimateBytes(rows)
    expect(estimate).toBeGreaterThanOrEqual(json)
    expect(estimate).toBeLessThanOrEqual(json * 20)
  })

  it('counts typed arrays by their byte length', () => {
    expect(estimateBytes(new Uint8Array(10_000))).toBeGreaterThanOrEqual(10_000)
    expect(estimateBytes(new Float64Array(1000))).toBeGreaterThanOrEqual(8000)
    expect(estimateBytes(Buffer.alloc(4096))).toBeGreaterThanOrEqual(4096)
  })

  it('walks maps and sets', () => {
    const big = 'v'.repeat(1000)
    expect(estimateBytes(new Map([['k', big]]))).toBeGreaterThan(estimateBytes(big))
    expect(estimateBytes(new Set([big]))).toBeGreaterThan(estimateBytes(big))
    expect(estimateBytes(new Map())).toBeGreaterThan(0)
  })

  it('terminates on cycles and counts a shared object once', () => {
    const node: { self?: unknown; list: unknown[] } = { list: [] }
    node.self = node
    node.list.push(node, node)
    const size = estimateBytes(node)
    expect(Number.isFinite(size)).toBe(true)
    expect(size).toBeGreaterThan(0)
    const shared = { payload: 'p'.repeat(1000) }
    const twice = estimateBytes([shared, shared])
    expect(twice).toBeLessThan(estimateBytes([shared, { payload: 'p'.repeat(1000) }]))
  })
})
