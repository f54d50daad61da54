// cache-manager 7 (the real createCache) on KeyvLayercache: its API as its users call it, over memory and a
// real Redis, with the stack's tags and bus underneath.
import { InvalidKeyError } from '@layercache/core'
import { eventually } from '@layercache/test-utils'
import { createCache } from 'cache-manager'
import { describe, expect, it } from 'vitest'
import { createKeyv } from '../src'
import { useFleet } from './support/fleet'

const { fleet, redis, prefix } = useFleet()

describe('cache-manager on KeyvLayercache', () => {
  it('get, set, del, mget, mset, mdel and clear land in the stack', async () => {
    const [app] = await fleet(1)
    const cache = createCache({ stores: [createKeyv(app!.stack)] })
    expect(await cache.set('user:1', { name: 'Ada' })).toEqual({ name: 'Ada' })
    expect(await cache.get('user:1')).toEqual({ name: 'Ada' })
    expect(await app!.stack.has('keyv:user:1')).toBe(true)

    await cache.mset([
      { key: 'user:2', value: { name: 'Grace' } },
      { key: 'user:3', value: { name: 'Edsger' }, ttl: 60_000 },
    ])
    expect(await cache.mget(['user:1', 'user:2', 'user:3', 'user:4'])).toEqual([
      { name: 'Ada' },
      { name: 'Grace' },
      { name: 'Edsger' },
      undefined,
    ])

    expect(await cache.del('user:1')).toBe(true)
    expect(await cache.get('user:1')).toBeUndefined()
    expect(await app!.stack.has('keyv:user:1')).toBe(false)
    await cache.mdel(['user:2'])
    expect(await cache.mget(['user:2', 'user:3'])).toEqual([undefined, { name: 'Edsger' }])

    await app!.stack.set('native', 1)
    await cache.clear()
    expect(await cache.get('user:3')).toBeUndefined()
    expect(await app!.stack.get('native')).toBe(1) // clear() is the Keyv namespace only
  })

  it('passes TTLs through: per call, the cache default, and ttl() answers the expiry', async () => {
    const [app] = await fleet(1)
    const cache = createCache({ stores: [createKeyv(app!.stack)], ttl: 120_000 })
    const client = redis().createClient()
    await cache.set('per-call', 'v', 30_000)
    await cache.set('default', 'v')
    const perCall = await client.pttl(`${prefix()}keyv:per-call`)
    const byDefault = await client.pttl(`${prefix()}keyv:default`)
    expect(perCall).toBeGreaterThan(0)
    expect(perCall).toBeLessThanOrEqual(30_000)
    expect(byDefault).toBeGreaterThan(30_000)
    expect(byDefault).toBeLessThanOrEqual(120_000)

    const before = Date.now()
    await cache.set('timed', 'v', 60_000)
    const expires = await cache.ttl('timed')
    expect(expires).toBeGreaterThanOrEqual(before + 60_000)
    expect(expires).toBeLessThanOrEqual(Date.now() + 60_000)
  })

  it('wrap runs the function once, for sequential and for 1000 concurrent callers', async () => {
    const [app] = await fleet(1)
    const cache = createCache({ stores: [createKeyv(app!.stack)] })
    let calls = 0
    const load = async () => {
      calls++
      return { id: 42, price: 249 }
    }
    expect(await cache.wrap('product:42', load, 60_000)).toEqual({ id: 42, price: 249 })
    expect(await cache.wrap('product:42', load, 60_000)).toEqual({ id: 42, price: 249 })
    expect(calls).toBe(1)

    calls = 0
    const answers = await Promise.all(Array.from({ length: 1000 }, () => cache.wrap('product:7', load)))
    expect(calls).toBe(1)
    expect(new Set(answers.map((answer) => JSON.stringify(answer))).size).toBe(1)
    expect(await app!.stack.has('keyv:product:7')).toBe(true)

    // raw: Keyv's stored form, with the expiry cache-manager computes its refresh from.
    const raw = await cache.wrap('product:42', load, { ttl: 60_000, raw: true })
    expect(raw).toEqual({ value: { id: 42, price: 249 }, expires: expect.any(Number) })
  })

  it('wrap refreshes in the background past refreshThreshold and serves the cached value meanwhile', async () => {
    const [app] = await fleet(1)
    const cache = createCache({ stores: [createKeyv(app!.stack)] })
    // A threshold above the TTL: every hit is due for refresh, without waiting for time to pass.
    const options = { ttl: 60_000, refreshThreshold: 120_000 }
    expect(await cache.wrap('rate', async () => 1, options)).toBe(1)
    const refreshed = new Promise((resolve) => cache.on('refresh', resolve))
    expect(await cache.wrap('rate', async () => 2, options)).toBe(1)
    expect(await refreshed).toEqual({ key: 'rate', value: 2 })
    expect(await cache.get('rate')).toBe(2)
  })

  it('invalidation by tag and deletes reach every instance’s cache-manager', async () => {
    const [a, b] = await fleet(2)
    const tags = (key: string) => (key.startsWith('product:') ? ['products'] : undefined)
    const onA = createCache({ stores: [createKeyv(a!.stack, { tags })] })
    const onB = createCache({ stores: [createKeyv(b!.stack, { tags })] })
    await onA.set('product:1', 'anvil')
    await onA.set('product:2', 'rocket')
    await onA.set('page:home', '<h1>ACME</h1>')
    // B reads them once: now they are in B's memory too.
    expect(await onB.mget(['product:1', 'product:2', 'page:home'])).toEqual([
      'anvil',
      'rocket',
      '<h1>ACME</h1>',
    ])

    expect(await a!.stack.invalidateByTag('products')).toBe(2)
    await onA.del('page:home')
    await eventually(
      () => ['keyv:product:1', 'keyv:product:2', 'keyv:page:home'].every((key) => !b!.inMemory(key)),
      "B's memory drops the invalidated keys",
    )
    expect(await onB.mget(['product:1', 'product:2', 'page:home'])).toEqual([undefined, undefined, undefined])
  })

  it('a write the stack refuses is reported as cache-manager reports store errors; nothing is stored', async () => {
    const [app] = await fleet(1)
    // Keyv's default: errors are events, the call resolves.
    const keyv = createKeyv(app!.stack)
    const errors: unknown[] = []
    keyv.on('error', (error) => errors.push(error))
    const lenient = createCache({ stores: [keyv] })
    await lenient.set('bad\u0000key', 'v')
    expect(errors[0]).toBeInstanceOf(InvalidKeyError)

    // throwOnErrors: the call rejects, and cache-manager's `set` event carries the error.
    const strict = createCache({ stores: [createKeyv(app!.stack, {}, { throwOnErrors: true })] })
    const events: { error?: unknown }[] = []
    strict.on('set', (event) => events.push(event))
    await expect(strict.set('bad\u0000key', 'v')).rejects.toBeInstanceOf(InvalidKeyError)
    expect(events.at(-1)?.error).toBeInstanceOf(InvalidKeyError)
    expect(await redis().createClient().keys(`${prefix()}*`)).toEqual([])
  })
})
