import { type CacheEventMap, CacheStack, InvalidOptionError, SchemaMismatchError } from '@layercache/core'
import type { StandardSchemaV1 } from '@standard-schema/spec'
import { type } from 'arktype'
import * as v from 'valibot'
import { describe, expect, expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import { MemoryLayer, RemoteLayer } from './support/remote-layer'

// The shape this deploy reads; the previous deploy cached `{ id, name }` without `email`.
const zodUser = z.object({ id: z.number(), name: z.string(), email: z.string() })
const valibotUser = v.object({ id: v.number(), name: v.string(), email: v.string() })
const arktypeUser = type({ id: 'number', name: 'string', email: 'string' })
const OLD = { id: 1, name: 'Ada' }
const NEW = { id: 1, name: 'Ada', email: 'ada@example.com' }

function mismatches(cache: CacheStack): CacheEventMap['schemaMismatch'][] {
  const seen: CacheEventMap['schemaMismatch'][] = []
  cache.on('schemaMismatch', (event) => seen.push(event))
  return seen
}

// One union of the three schema types is too deep for the compiler: each is used as a Standard Schema.
const SCHEMAS: [string, StandardSchemaV1][] = [
  ['zod', zodUser],
  ['valibot', valibotUser],
  ['arktype', arktypeUser],
]

describe.each(SCHEMAS)('a schema on reads (%s)', (_name, schema) => {
  it('get: a value of the old shape is a counted miss; one of the new shape passes', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote])
    const seen = mismatches(cache)
    await cache.set('user:1', OLD)
    expect(await cache.get('user:1', { schema })).toBeUndefined()
    expect(cache.getStats()).toMatchObject({ schemaMismatches: 1 })
    expect(seen).toEqual([expect.objectContaining({ key: 'user:1' })])
    // Nothing was removed: a reader without the schema (the previous deploy) still reads it.
    expect(await cache.get('user:1')).toEqual(OLD)
    await cache.set('user:1', NEW)
    expect(await cache.get('user:1', { schema })).toEqual(NEW)
  })

  it('getOrSet: a value of the old shape is reloaded, once, and the new one cached', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RemoteLayer()])
    await cache.set('user:1', OLD)
    let loads = 0
    const loader = async () => {
      loads++
      return NEW
    }
    const answers = await Promise.all([
      cache.getOrSet('user:1', loader, { schema }),
      cache.getOrSet('user:1', loader, { schema }),
    ])
    expect(answers).toEqual([NEW, NEW])
    expect(loads).toBe(1)
    expect(await cache.get('user:1', { schema })).toEqual(NEW)
    expect(cache.getStats().schemaMismatches).toBe(2)
  })

  it('getOrSet: a loader value the schema refuses is never cached and rejects with SchemaMismatchError', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote])
    const error = (await cache
      .getOrSet('user:2', async () => OLD, { schema })
      .catch((caught: unknown) => caught)) as SchemaMismatchError
    expect(error).toBeInstanceOf(SchemaMismatchError)
    expect(error.issues.length).toBeGreaterThan(0)
    expect(await remote.get('user:2')).toBeUndefined()
    expect(await cache.get('user:2')).toBeUndefined()
  })

  it('mget and wrap validate each value', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.mset([
      { key: 'user:1', value: OLD },
      { key: 'user:2', value: NEW },
    ])
    expect(await cache.mget(['user:1', 'user:2', 'user:3'], { schema })).toEqual([undefined, NEW, undefined])
    await cache.set('find:[1]', OLD)
    const find = cache.wrap('find', async (_id: number) => NEW, { schema })
    expect(await find(1)).toEqual(NEW)
  })
})

describe('schema output and types', () => {
  it('answers the schema’s output (a coercion turns the stored string back into a Date)', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RemoteLayer()])
    const event = z.object({ at: z.coerce.date() })
    await cache.set('event:1', { at: '2026-12-06T10:00:00.000Z' })
    const read = await cache.get('event:1', { schema: event })
    expect(read?.at).toBeInstanceOf(Date)
    expectTypeOf(read).toEqualTypeOf<{ at: Date } | undefined>()
    const loaded = await cache.getOrSet('event:2', () => ({ at: '2026-12-07T10:00:00.000Z' }), {
      schema: event,
    })
    expect(loaded.at.toISOString()).toBe('2026-12-07T10:00:00.000Z')
    expectTypeOf(loaded).toEqualTypeOf<{ at: Date }>()
  })

  it('the schema decides the answer’s type on every read, arktype included, whatever the loader returns', async () => {
    // Each line failed to compile or was typed from the loader before the overloads took `WithSchema`.
    const cache = new CacheStack([new MemoryLayer()])
    const event = z.object({ at: z.coerce.date() })
    const user = type({ id: 'number' })
    await cache.set('u:1', { id: 1 })
    expectTypeOf(await cache.get('u:1', { schema: user })).toEqualTypeOf<{ id: number } | undefined>()
    expectTypeOf(await cache.mget(['u:1'], { schema: user })).toEqualTypeOf<({ id: number } | undefined)[]>()
    expectTypeOf(await cache.getOrSet('u:1', () => ({ id: 1 }), { schema: user })).toEqualTypeOf<{
      id: number
    }>()
    // A loader whose value the schema refuses is typed by the schema (and rejects at run time).
    const refused = cache.getOrSet('u:2', async () => ({ id: 'two' }), { schema: user })
    expectTypeOf(refused).toEqualTypeOf<Promise<{ id: number }>>()
    await expect(refused).rejects.toBeInstanceOf(SchemaMismatchError)
    const many = await cache.getOrSetMany(['e:1'], (keys) => keys.map(() => ({ at: '2026-12-07' })), {
      schema: event,
    })
    expectTypeOf(many).toEqualTypeOf<({ at: Date } | undefined)[]>()
    expect(many[0]?.at).toBeInstanceOf(Date)
    const find = cache.wrap('find', async (at: string) => ({ at }), { schema: event })
    expectTypeOf(find).toEqualTypeOf<(at: string) => Promise<{ at: Date }>>()
    expect((await find('2026-12-07')).at).toBeInstanceOf(Date)
  })

  it('an async validator works the same', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const slow = z.object({ id: z.number() }).refine(async (user) => user.id > 0)
    await cache.set('user:0', { id: 0 })
    expect(await cache.get('user:0', { schema: slow })).toBeUndefined()
    expect(await cache.getOrSet('user:0', async () => ({ id: 5 }), { schema: slow })).toEqual({ id: 5 })
  })

  it('refuses something that is not a Standard Schema, changing nothing', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    await cache.set('k', 1)
    const bad = { schema: { parse: () => 1 } } as never
    await expect(cache.get('k', bad)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.mget(['k'], bad)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.getOrSet('k', () => 2, bad)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(() => cache.wrap('w', () => 1, bad)).toThrow(InvalidOptionError)
    await expect(cache.has('k', { schema: zodUser } as never)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(await cache.get('k')).toBe(1)
  })
})
