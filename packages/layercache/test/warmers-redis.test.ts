import { describe, expect, it } from 'vitest'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('warm')

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

describe.each(['standalone', 'cluster'] as const)('warmers on %s Redis', (target) => {
  it('the invalidating instance refills the key in Redis, so other instances read it without loading', async () => {
    const { a, b } = setup(target)
    let version = 0
    a.addWarmer('homepage', () => `home v${++version}`, { tags: ['featured'] })
    await a.getOrSet('homepage', () => `home v${++version}`, { tags: ['featured'] })
    await a.invalidateByTag('featured')
    await settle()
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
