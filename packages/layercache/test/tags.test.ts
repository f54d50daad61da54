import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../src'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('tg')

describe.each(['memory only', 'standalone', 'cluster'] as const)('tag invalidation, %s', (target) => {
  it('removes every key of a tag from every layer and returns the count', async () => {
    const { a, b } = setup(target)
    await a.set('user:123', { id: 123 }, { tags: ['user:123'] })
    await a.set('user:123:posts', ['p'], { tags: ['user:123', 'posts'] })
    await a.set('user:456', { id: 456 }, { tags: ['user:456'] })
    expect(await a.invalidateByTag('user:123')).toBe(2)
    expect(await a.get('user:123')).toBeUndefined()
    expect(await a.get('user:123:posts')).toBeUndefined()
    expect(await a.get('user:456')).toEqual({ id: 456 })
    if (target !== 'memory only') {
      // Another instance (cold memory) finds nothing in Redis either.
      expect(await b.get('user:123:posts')).toBeUndefined()
      expect(await b.get('user:456')).toEqual({ id: 456 })
    }
    expect(a.getStats().invalidations).toBe(1)
  })

  it("'any' and 'all' select keys as documented", async () => {
    const { a } = setup(target)
    await a.set('user:a:1', 1, { tags: ['tenant:a', 'admin', 'user'] })
    await a.set('user:a:2', 2, { tags: ['tenant:a', 'admin', 'user'] })
    await a.set('user:a:3', 3, { tags: ['tenant:a', 'user'] })
    await a.set('user:b:1', 4, { tags: ['tenant:b', 'admin', 'user'] })
    expect(await a.invalidateByTags(['tenant:a', 'admin'], 'all')).toBe(2)
    expect(await a.mget(['user:a:1', 'user:a:2', 'user:a:3', 'user:b:1'])).toEqual([
      undefined,
      undefined,
      3,
      4,
    ])
    expect(await a.invalidateByTags(['tenant:a', 'tenant:b'], 'any')).toBe(2)
    expect(await a.mget(['user:a:3', 'user:b:1'])).toEqual([undefined, undefined])
  })

  it('tags from getOrSet and from the loader context count too', async () => {
    const { a } = setup(target)
    await a.getOrSet('product:1', () => ({ price: 10 }), { tags: ['category:tech'] })
    await a.getOrSet('product:2', (ctx) => {
      ctx.setTags(['category:tech', 'brand:sony'])
      return { price: 20 }
    })
    expect(await a.invalidateByTag('brand:sony')).toBe(1)
    expect(await a.invalidateByTag('category:tech')).toBe(1)
    let loads = 0
    await a.getOrSet('product:1', () => ++loads)
    expect(loads).toBe(1)
  })

  it('a namespace only reaches its own tags', async () => {
    const { a } = setup(target)
    const acme = a.namespace('tenant:acme')
    const other = a.namespace('tenant:other')
    await acme.set('settings', 'acme', { tags: ['settings'] })
    await other.set('settings', 'other', { tags: ['settings'] })
    await a.set('settings', 'root', { tags: ['settings'] })
    expect(await acme.invalidateByTag('settings')).toBe(1)
    expect(await acme.get('settings')).toBeUndefined()
    expect(await other.get('settings')).toBe('other')
    expect(await a.get('settings')).toBe('root')
  })

  it('a load in flight when the tag is invalidated does not write its value back', async () => {
    const { a } = setup(target)
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let began!: () => void
    const loaderRunning = new Promise<void>((resolve) => {
      began = resolve
    })
    const loading = a.getOrSet(
      'price:1',
      async () => {
        began()
        await gate
        return 'old price'
      },
      { tags: ['price'] },
    )
    await loaderRunning // the load is in flight: its loader is running
    await a.invalidateByTag('price')
    release()
    expect(await loading).toBe('old price')
    expect(await a.get('price:1')).toBeUndefined()
  })

  it('refuses bad input and changes nothing', async () => {
    const { a } = setup(target)
    await a.set('k', 'v', { tags: ['t'] })
    await expect(a.invalidateByTags([])).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(a.invalidateByTag('')).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(a.invalidateByTag('a\nb')).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(a.invalidateByTags(['t'], 'some' as 'any')).rejects.toBeInstanceOf(InvalidOptionError)
    expect(await a.get('k')).toBe('v')
  })
})

describe.each(['standalone', 'cluster'] as const)('tag invalidation across instances, %s', (target) => {
  it('a load on one instance does not write back what another instance invalidated meanwhile', async () => {
    const { a, b } = setup(target)
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let began!: () => void
    const loaderRunning = new Promise<void>((resolve) => {
      began = resolve
    })
    const loading = a.getOrSet(
      'price:1',
      async () => {
        began()
        await gate
        return 'read before the price change'
      },
      { tags: ['price'] },
    )
    await loaderRunning // the load is in flight (the loader runs after its fence snapshot is taken)
    await b.set('other', 1, { tags: ['price'] })
    expect(await b.invalidateByTag('price')).toBe(1)
    release()
    expect(await loading).toBe('read before the price change')
    // Neither Redis nor the loading instance's own memory keeps it.
    expect(await b.get('price:1')).toBeUndefined()
    expect(await a.get('price:1')).toBeUndefined()
    expect(a.getStats().fencedWrites).toBeGreaterThan(0)
    // The next load is written normally.
    expect(await a.getOrSet('price:1', () => 'new price', { tags: ['price'] })).toBe('new price')
    expect(await b.get('price:1')).toBe('new price')
  })
})

describe('tag invalidation races against real Redis', () => {
  it('concurrent set and invalidateByTag never leave a live, tagged value that an invalidation missed', async () => {
    const { a, b, redisOnly } = setup('standalone')
    let missed = 0
    for (let i = 0; i < 1000; i++) {
      const key = `item:${i % 10}`
      const write = (async () => {
        if (Math.random() < 0.5) await new Promise((resolve) => setImmediate(resolve))
        await a.set(key, i, { tags: ['catalog'] })
      })()
      const invalidate = (async () => {
        if (Math.random() < 0.5) await new Promise((resolve) => setImmediate(resolve))
        await b.invalidateByTag('catalog')
      })()
      await Promise.all([write, invalidate])
      // Whatever survived must be found by the next invalidation.
      if ((await b.get(key)) !== undefined) {
        await b.invalidateByTag('catalog')
        if ((await redisOnly().get(key)) !== undefined) missed++
      }
    }
    expect(missed).toBe(0)
  })
})
