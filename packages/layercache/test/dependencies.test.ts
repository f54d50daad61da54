import { describe, expect, it } from 'vitest'
import { InvalidKeyError, InvalidOptionError } from '../src'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('dep')

describe.each(['memory only', 'standalone', 'cluster'] as const)('dependsOn, %s', (target) => {
  it('deleting a key removes its dependents, transitively', async () => {
    const { a } = setup(target)
    await a.set('product:1', { price: 10 })
    await a.set('featured', ['product:1'], { dependsOn: ['product:1'] })
    await a.set('homepage', '<html>', { dependsOn: ['featured'] })
    await a.set('unrelated', 1)
    await a.delete('product:1')
    expect(await a.mget(['product:1', 'featured', 'homepage', 'unrelated'])).toEqual([
      undefined,
      undefined,
      undefined,
      1,
    ])
  })

  it('cycles end', async () => {
    const { a } = setup(target)
    await a.set('x', 1, { dependsOn: ['y'] })
    await a.set('y', 2, { dependsOn: ['x'] })
    await a.delete('x')
    expect(await a.mget(['x', 'y'])).toEqual([undefined, undefined])
  })

  it('a tag invalidation cascades to dependents and counts them', async () => {
    const { a } = setup(target)
    await a.set('product:1', 1, { tags: ['category:tech'] })
    await a.set('product:2', 2, { tags: ['category:tech'] })
    await a.getOrSet('category-page', () => 'page', { dependsOn: ['product:1', 'product:2'] })
    expect(await a.invalidateByTag('category:tech')).toBe(3)
    expect(await a.get('category-page')).toBeUndefined()
  })

  it('a namespace keeps dependencies inside it', async () => {
    const { a } = setup(target)
    const t1 = a.namespace('t1')
    const t2 = a.namespace('t2')
    await t1.set('base', 1)
    await t1.set('derived', 2, { dependsOn: ['base'] })
    await t2.set('derived', 3, { dependsOn: ['base'] })
    await t1.delete('base')
    expect(await t1.get('derived')).toBeUndefined()
    expect(await t2.get('derived')).toBe(3)
  })

  it('refuses bad dependencies and changes nothing', async () => {
    const { a } = setup(target)
    await a.set('k', 'v')
    await expect(a.set('k', 'w', { dependsOn: [''] })).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(a.set('k', 'w', { dependsOn: 'base' as unknown as string[] })).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(await a.get('k')).toBe('v')
  })
})

describe.each(['standalone', 'cluster'] as const)('dependsOn across instances, %s', (target) => {
  it('a delete on one instance removes dependents another instance wrote', async () => {
    const { a, b, redisOnly } = setup(target)
    await a.set('product:1', 1)
    await a.set('homepage', 'home', { dependsOn: ['product:1'] })
    // b has never written anything with dependsOn itself, and still cascades through Redis.
    await b.delete('product:1')
    const cold = redisOnly()
    expect(await cold.get('homepage')).toBeUndefined()
  })
})
