/**
 * Memory and Redis never disagree on a value (DESIGN invariant 11): with the JSON serializer, `set`
 * refuses what JSON would not read back as it was given (a Map would come back as `{}`, a Date as a
 * string), with a typed error that changes nothing, instead of caching two different values.
 */
import { CacheStack, SerializationError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'

let redis: TestRedis
let client: Redis
let raw: Redis
let n = 0
const prefix = () => `${redis.keyPrefix}json${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  raw = redis.createClient()
})
afterAll(() => redis.close())

class Money {
  constructor(readonly cents: number) {}
}

const REFUSED: { name: string; value: unknown; path: string }[] = [
  { name: 'a Map', value: { items: new Map([['a', 1]]) }, path: 'value.items' },
  { name: 'a Set', value: { ids: new Set([1, 2]) }, path: 'value.ids' },
  { name: 'a Date', value: { at: new Date(0) }, path: 'value.at' },
  { name: 'a typed array', value: [new Uint8Array([1, 2])], path: 'value[0]' },
  { name: 'a Buffer', value: { b: Buffer.from('x') }, path: 'value.b' },
  { name: 'a class instance', value: { price: new Money(100) }, path: 'value.price' },
  { name: 'a RegExp', value: { re: /a/g }, path: 'value.re' },
  { name: 'undefined in an array', value: { list: [1, undefined, 3] }, path: 'value.list[1]' },
  { name: 'a hole in an array', value: { list: new Array(3) }, path: 'value.list[0]' },
  { name: 'NaN', value: { n: Number.NaN }, path: 'value.n' },
  { name: 'Infinity', value: [Number.POSITIVE_INFINITY], path: 'value[0]' },
  { name: 'a function', value: { f: () => 1 }, path: 'value.f' },
  { name: 'a symbol', value: { s: Symbol('s') }, path: 'value.s' },
  { name: 'a bigint', value: { big: 10n }, path: 'value.big is a bigint' },
  { name: 'a bigint in an array', value: { list: [1, 2n] }, path: 'value.list[1] is a bigint' },
  { name: 'a Date as the whole value', value: new Date(0), path: 'value' },
]

describe('the JSON serializer refuses values it cannot round-trip', () => {
  for (const { name, value, path } of REFUSED) {
    it(`${name}: SerializationError at set, nothing changed in memory or Redis`, async () => {
      const p = prefix()
      const writer = new CacheStack([
        new MemoryLayer({ protection: 'none' }),
        new RedisLayer({ client, prefix: p }),
      ])
      await writer.set('k', { old: true })
      const error = await writer.set('k', value).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(SerializationError)
      expect((error as Error).message).toContain(path)
      await expect(
        writer.mset([
          { key: 'other', value: 1 },
          { key: 'k', value },
        ]),
      ).rejects.toBeInstanceOf(SerializationError)
      expect(await writer.get('k')).toEqual({ old: true })
      expect(await writer.get('other')).toBeUndefined()
      expect(await raw.exists(`${p}other`)).toBe(0)
      const reader = new CacheStack([new RedisLayer({ client, prefix: p })])
      expect(await reader.get('k')).toEqual({ old: true })
    })
  }

  it('a loader returning a value JSON cannot keep: getOrSet rejects with SerializationError, nothing cached', async () => {
    const p = prefix()
    const stack = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: p })])
    const at = new Date(0)
    const answer = await stack.getOrSet('k', () => ({ at })).catch((e: unknown) => e)
    expect(answer).toBeInstanceOf(SerializationError)
    // Never a Date in memory here and a string in Redis for the others.
    expect(await stack.get('k')).toBeUndefined()
    expect(await raw.exists(`${p}:k`)).toBe(0)
  })

  it('accepts plain data, and the writer and another instance read the same value', async () => {
    const p = prefix()
    const value = {
      s: 'text',
      n: -1.5,
      zero: 0,
      t: true,
      nil: null,
      // JSON drops it; a read of the property answers undefined from memory and from Redis alike.
      maybe: undefined,
      nested: { list: [1, 'two', { three: [3] }], empty: {} },
      bare: Object.assign(Object.create(null), { a: 1 }),
    }
    const writer = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: p })])
    await writer.set('k', value)
    const reader = new CacheStack([new RedisLayer({ client, prefix: p })])
    expect(await reader.get('k')).toEqual(await writer.get('k'))
    expect(await reader.get('k')).toEqual({ ...value, bare: { a: 1 } })
  })

  it('msgpack keeps Maps, Sets, Dates and Buffers, so memory and Redis agree there', async () => {
    const p = prefix()
    const value = { items: new Map([['a', 1]]), ids: new Set([1]), at: new Date(0), bytes: Buffer.from('hi') }
    const writer = new CacheStack([
      new MemoryLayer(),
      new RedisLayer({ client, prefix: p, serializer: 'msgpack' }),
    ])
    await writer.set('k', value)
    const reader = new CacheStack([new RedisLayer({ client, prefix: p, serializer: 'msgpack' })])
    expect(await reader.get('k')).toEqual(value)
    expect(await writer.get('k')).toEqual(value)
    // Both copies are Buffers (structuredClone alone made the memory copy a plain Uint8Array).
    const fromRedis = (await reader.get<typeof value>('k'))!.bytes
    const fromMemory = (await writer.get<typeof value>('k'))!.bytes
    expect([Buffer.isBuffer(fromRedis), fromRedis.toString()]).toEqual([true, 'hi'])
    expect([Buffer.isBuffer(fromMemory), fromMemory.toString()]).toEqual([true, 'hi'])
  })
})
