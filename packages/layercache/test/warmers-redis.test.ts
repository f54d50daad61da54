import { describe, expect, it } from 'vitest'
import type { CacheEventMap, CacheStack } from '../src'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('warm')

/** The stack's next 'rewarm' event: a warmer finished refilling its key (or failed to). */
function nextRewarm(stack: CacheStack): Promise<CacheEventMap['rewarm']> {
  return new Promise((resolve) => {
    const off = stack.on('rewarm', (event) => {
      off()
      resolve(event)
    })
  })
}

describe.each(['standalone', 'cluster'] as const)('warmers on %s Redis', (target) => {
  it('the invalidating instance refills the key in Redis, so other instances read it without loading', async () => {
    const { a, b } = setup(target)
    let version = 0
    a.addWarmer('homepage', () => `home v${++version}`, { tags: ['featured'] })
    await a.getOrSet('homepage', () => `home v${++version}`, { tags: ['featured'] })
    const rewarmed = nextRewarm(a)
    await a.invalidateByTag('featured')
    expect(await rewarmed).toEqual({ key: 'homepage' })
    let loadedOnB = 0
    expect(
      await b.getOrSet('homepage', () => {
        loadedOnB++
        return 'b loaded'
      }),
    ).toBe('home v2')
    expect(loadedOnB).toBe(0)
    // The refilled value is tagged again, so the next invalidation finds it.
    expect(await b.invalidateByTag('featured')).toBe(1)
  })
})
