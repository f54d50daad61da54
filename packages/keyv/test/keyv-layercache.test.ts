import { InvalidKeyError, InvalidOptionError, InvalidTtlError, type LayerCacheError } from '@layercache/core'
import { eventually } from '@layercache/test-utils'
import Keyv from 'keyv'
import { describe, expect, it } from 'vitest'
import { createKeyv, KeyvLayercache } from '../src'
import { useFleet } from './support/fleet'

const { fleet, redis, prefix } = useFleet()

/** The Redis key of a stack key (the stack's Redis layer writes under the fleet's prefix). */
const redisKey = (key: string) => `${prefix()}${key}`

describe('KeyvLayercache', () => {
  it('stores under `namespace:key`, the key a namespace view of the stack reads', async () => {
    const [app] = await fleet(1)
    const keyv = createKeyv(app!.stack)
    expect(await keyv.set('product:1', { id: 1, name: 'Anvil' })).toBe(true)
    expect(await keyv.get('product:1')).toEqual({ id: 1, name: 'Anvil' })

    // Keyv's default namespace is `keyv`: the entry is the stack's `keyv:product:1`, in memory and Redis.
    expect(await app!.stack.has('keyv:product:1')).toBe(true)
    expect(await app!.stack.namespace('keyv').has('product:1')).toBe(true)
    expect(app!.inMemory('keyv:product:1')).toBeDefined()
    expect(await redis().createClient().exists(redisKey('keyv:product:1'))).toBe(1)
  })

  it('writes with the TTL Keyv passes, in memory and in Redis', async () => {
    const [app] = await fleet(1)
    const keyv = createKeyv(app!.stack)
    await keyv.set('short', 'lived', 30_000)
    await keyv.set('default', 'ttl')
    const client = redis().createClient()
    const short = await client.pttl(redisKey('keyv:short'))
    expect(short).toBeGreaterThan(0)
    expect(short).toBeLessThanOrEqual(30_000)
    // Without a TTL from Keyv, the stack's and layers' own apply (this stack has none: no expiry in Redis).
    expect(await client.pttl(redisKey('keyv:default'))).toBe(-1)
    // Keyv's own default TTL reaches the store too.
    const withDefault = createKeyv(app!.stack, {}, { ttl: 45_000, namespace: 'other' })
    await withDefault.set('k', 'v')
    const other = await client.pttl(redisKey('other:k'))
    expect(other).toBeGreaterThan(30_000)
    expect(other).toBeLessThanOrEqual(45_000)
  })

  it('clear() removes its own namespace only; without a namespace, the whole stack view', async () => {
    const [app] = await fleet(1)
    const stack = app!.stack
    const sessions = createKeyv(stack, {}, { namespace: 'sessions' })
    const pages = createKeyv(stack, {}, { namespace: 'pages' })
    await sessions.set('a', 1)
    await pages.set('a', 2)
    await stack.set('native', 'written by layercache code')
    await sessions.clear()
    expect(await sessions.get('a')).toBeUndefined()
    expect(await pages.get('a')).toBe(2)
    expect(await stack.get('native')).toBe('written by layercache code')

    // A Keyv without a namespace on a tenant's view clears that tenant, not the others.
    const acme = new Keyv({ store: new KeyvLayercache(stack.namespace('tenant:acme')), namespace: undefined })
    const globex = new Keyv({ store: new KeyvLayercache(stack.namespace('tenant:globex')) })
    await acme.set('a', 'acme')
    await globex.set('a', 'globex')
    expect(await stack.get('tenant:acme:a')).toBeTypeOf('string') // Keyv's serialized form
    await acme.clear()
    expect(await acme.get('a')).toBeUndefined()
    expect(await globex.get('a')).toBe('globex')
    expect(await pages.get('a')).toBe(2)
  })

  it('keeps namespaces apart when Keyv does not prefix keys (useKeyPrefix: false)', async () => {
    const [app] = await fleet(1)
    const one = createKeyv(app!.stack, {}, { namespace: 'one', useKeyPrefix: false })
    const two = createKeyv(app!.stack, {}, { namespace: 'two', useKeyPrefix: false })
    await one.set('k', 1)
    await two.set('k', 2)
    expect(await app!.stack.has('one:k')).toBe(true)
    await one.clear()
    expect(await one.get('k')).toBeUndefined()
    expect(await two.get('k')).toBe(2)
  })

  it('tags entries with `tags`, so stack.invalidateByTag reaches what Keyv wrote', async () => {
    const [app] = await fleet(1)
    const seen: [string, string | undefined][] = []
    const keyv = createKeyv(app!.stack, {
      tags: (key, namespace) => {
        seen.push([key, namespace])
        const product = /^product:(\d+)/.exec(key)
        return product ? ['products', `product:${product[1]}`] : undefined
      },
    })
    await keyv.set('product:1', 'one')
    await keyv.set('product:1:reviews', ['good'])
    await keyv.set('product:2', 'two')
    await keyv.set('user:1', 'someone')
    await keyv.setMany([{ key: 'product:3', value: 'three' }])
    expect(seen).toContainEqual(['product:1', 'keyv'])
    expect(seen).toContainEqual(['product:3', 'keyv'])

    expect(await app!.stack.invalidateByTag('product:1')).toBe(2)
    expect(await keyv.get('product:1')).toBeUndefined()
    expect(await keyv.get('product:1:reviews')).toBeUndefined()
    expect(await keyv.get('product:2')).toBe('two')

    expect(await app!.stack.invalidateByTag('products')).toBe(2)
    expect(await keyv.get(['product:2', 'product:3', 'user:1'])).toEqual([undefined, undefined, 'someone'])
  })

  it('a delete on one instance reaches the memory of the others over the bus', async () => {
    const [a, b] = await fleet(2)
    const onA = createKeyv(a!.stack)
    const onB = createKeyv(b!.stack)
    await onA.set('price:1', 249)
    expect(await onB.get('price:1')).toBe(249) // a Redis hit, copied into B's memory
    expect(b!.inMemory('keyv:price:1')).toBeDefined()

    expect(await onA.delete('price:1')).toBe(true)
    await eventually(() => b!.inMemory('keyv:price:1') === undefined, "B's memory drops the key")
    expect(await onB.get('price:1')).toBeUndefined()
  })

  it('an overwrite on one instance reaches the others with broadcastL1Invalidation', async () => {
    const [a, b] = await fleet(2, { broadcastL1Invalidation: true })
    const onA = createKeyv(a!.stack)
    const onB = createKeyv(b!.stack)
    await onA.set('price:1', 249)
    expect(await onB.get('price:1')).toBe(249)
    await onA.set('price:1', 299)
    await eventually(() => b!.inMemory('keyv:price:1') === undefined, "B's memory drops the old price")
    expect(await onB.get('price:1')).toBe(299)
  })

  it('answers delete, deleteMany, has and hasMany with what was cached', async () => {
    const [app] = await fleet(1)
    const keyv = createKeyv(app!.stack)
    await keyv.set('a', 1)
    await keyv.set('b', 2)
    expect(await keyv.has('a')).toBe(true)
    expect(await keyv.has(['a', 'b', 'c'])).toEqual([true, true, false])
    expect(await keyv.delete('a')).toBe(true)
    expect(await keyv.delete('a')).toBe(false)
    expect(await keyv.delete(['b', 'c'])).toBe(true)
    expect(await keyv.delete(['b', 'c'])).toBe(false)
    expect(await app!.stack.has('keyv:b')).toBe(false)
  })

  it('reads many keys in one call through the stack (getMany), memory hits and Redis hits alike', async () => {
    const [a, b] = await fleet(2)
    const onA = createKeyv(a!.stack)
    const onB = createKeyv(b!.stack)
    await onA.setMany([
      { key: 'x', value: 'X' },
      { key: 'y', value: { nested: ['Y'] } },
    ])
    const before = b!.stack.getStats()
    await onB.get('x') // now in B's memory; y is only in Redis
    expect(await onB.get(['x', 'y', 'z'])).toEqual(['X', { nested: ['Y'] }, undefined])
    const after = b!.stack.getStats()
    expect(after.layers[0]!.hits - before.layers[0]!.hits).toBe(1)
    expect(after.layers[1]!.hits - before.layers[1]!.hits).toBe(2)
  })

  it('stores Keyv’s envelope as it is when Keyv does not serialize, expiry included', async () => {
    const [app] = await fleet(1)
    const keyv = createKeyv(app!.stack, {}, { serialize: undefined, deserialize: undefined })
    await keyv.set('plain', { id: 7 }, 60_000)
    const stored = (await app!.stack.get('keyv:plain')) as { value: unknown; expires: number }
    expect(stored.value).toEqual({ id: 7 })
    expect(stored.expires).toBeGreaterThan(Date.now())
    expect(await keyv.get('plain')).toEqual({ id: 7 })
    expect(await keyv.get('plain', { raw: true })).toEqual({ value: { id: 7 }, expires: stored.expires })
  })

  it('calls `disconnect` on keyv.disconnect(), and leaves the stack alone without it', async () => {
    const [app] = await fleet(1)
    let disconnected = 0
    const owned = createKeyv(app!.stack, { disconnect: () => void disconnected++ })
    await owned.disconnect()
    expect(disconnected).toBe(1)
    const shared = createKeyv(app!.stack)
    await shared.set('k', 'v')
    await shared.disconnect()
    expect(await shared.get('k')).toBe('v')
  })
})

describe('KeyvLayercache refuses bad input and changes nothing', () => {
  it('refuses what is not a stack, unknown options and options of the wrong type', () => {
    expect(() => new KeyvLayercache({} as never)).toThrow(InvalidOptionError)
    expect(() => new KeyvLayercache(undefined as never)).toThrow(InvalidOptionError)
    expect(() => new KeyvLayercache({ get: () => {} } as never)).toThrow(
      /KeyvLayercache expects a CacheStack/,
    )
  })

  it('refuses unknown and mistyped options', async () => {
    const [app] = await fleet(1)
    expect(() => new KeyvLayercache(app!.stack, { ttl: 5 } as never)).toThrow(InvalidOptionError)
    expect(() => new KeyvLayercache(app!.stack, { tags: ['a'] } as never)).toThrow(/tags must be a function/)
    expect(() => new KeyvLayercache(app!.stack, { disconnect: true } as never)).toThrow(
      /disconnect must be a function/,
    )
  })

  it('a key, TTL or tag the stack refuses fails the write with a typed error; nothing is written', async () => {
    const [app] = await fleet(1)
    const errors: unknown[] = []
    const keyv = createKeyv(app!.stack, { tags: (key) => (key === 'bad-tag' ? [''] : undefined) })
    keyv.on('error', (error) => errors.push(error))

    // Keyv's default: the write resolves to false and the error is emitted.
    expect(await keyv.set('control\u0007char', 'v')).toBe(false)
    expect(await keyv.set('fraction', 'v', 1.5)).toBe(false)
    expect(await keyv.set('bad-tag', 'v')).toBe(false)
    expect(errors.map((error) => (error as LayerCacheError).code)).toEqual([
      'INVALID_KEY',
      'INVALID_TTL',
      'INVALID_OPTION',
    ])
    expect(errors[0]).toBeInstanceOf(InvalidKeyError)
    expect(errors[1]).toBeInstanceOf(InvalidTtlError)
    expect(await app!.stack.has('keyv:fraction')).toBe(false)
    expect(await app!.stack.has('keyv:bad-tag')).toBe(false)

    // With throwOnErrors, the same error rejects the call.
    const throwing = createKeyv(app!.stack, {}, { throwOnErrors: true })
    await expect(throwing.set('x', 'v', -1)).rejects.toBeInstanceOf(InvalidTtlError)
    expect(await app!.stack.has('keyv:x')).toBe(false)

    // A batch with one bad entry writes none of them.
    await expect(
      throwing.setMany([
        { key: 'ok', value: 1 },
        { key: 'also-ok', value: 2, ttl: 0.5 },
      ]),
    ).rejects.toBeInstanceOf(InvalidTtlError)
    expect(await app!.stack.has('keyv:ok')).toBe(false)
  })

  it('cannot reach the stack’s internal key space (keys starting with ~)', async () => {
    const [app] = await fleet(1)
    const bare = new Keyv({
      store: new KeyvLayercache(app!.stack),
      namespace: undefined,
      throwOnErrors: true,
    })
    await expect(bare.set('~gen', 'x')).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(bare.get('~gen')).rejects.toBeInstanceOf(InvalidKeyError)
  })
})
