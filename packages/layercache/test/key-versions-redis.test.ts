import { describe, expect, it } from 'vitest'
import type { RedisLayer } from '../src'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('versions')

describe.each(['standalone', 'cluster'] as const)('key version counters on %s Redis', (target) => {
  it('are shared by every instance: a bump on one makes the versioned keys of all unreachable', async () => {
    const { a, b, redisOnly } = setup(target)
    const versioned = async (stack: typeof a) => `report:v${await stack.keyVersion('reports')}:2024-04`
    await a.set(await versioned(a), 'old report')
    expect(await b.get(await versioned(b))).toBe('old report')
    expect(await b.bumpKeyVersion('reports')).toBe(1)
    expect(await a.keyVersion('reports')).toBe(1)
    expect(await a.get(await versioned(a))).toBeUndefined()
    expect(await redisOnly().get('report:v0:2024-04')).toBe('old report') // left to its TTL
  })

  it('survive clear(), so a version number is never reused', async () => {
    const { a } = setup(target)
    await a.bumpKeyVersion('catalog')
    await a.bumpKeyVersion('catalog')
    await (a.layers[1] as RedisLayer).clear()
    expect(await a.keyVersion('catalog')).toBe(2)
  })
})
