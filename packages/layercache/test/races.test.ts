import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheStack, MemoryLayer, RedisLayer } from '../src'

let redis: TestRedis
let client: Redis
let run = 0

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis.close())

function instance() {
  const memory = new MemoryLayer({ ttl: 60_000 })
  const layer = new RedisLayer({ client, prefix: `${redis.keyPrefix}races${run}` })
  return { memory, layer, cache: new CacheStack([memory, layer]) }
}

/** A loader parked until `release()`; `started` resolves once the stack has called it. */
function gatedLoader<T>(value: T) {
  let release!: () => void
  let markStarted!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const started = new Promise<void>((resolve) => {
    markStarted = resolve
  })
  const loader = async () => {
    markStarted()
    await gate
    return value
  }
  return { loader, started, release }
}
/** A random short pause: none, a microtask, or a turn of the event loop (lets Redis replies in). */
const jitter = () => {
  const roll = Math.random()
  if (roll < 0.3) return Promise.resolve()
  return new Promise((resolve) => (roll < 0.6 ? setImmediate(resolve) : setTimeout(resolve, 0)))
}

describe('invariant 1: an invalidation is never undone by a read or load that began before it', () => {
  it('a delete issued while an L2 read is in flight stops that read from back-filling L1', async () => {
    run++
    const writer = instance()
    await writer.cache.set('k', 'old')
    const reader = instance()
    const read = reader.cache.get('k') // GET is on the wire now
    const deleted = reader.cache.delete('k') // UNLINK follows it on the same connection
    expect(await read).toBe('old') // the read legitimately answered before the delete
    await deleted
    expect(reader.memory.get('k')).toBeUndefined()
    expect(await reader.cache.get('k')).toBeUndefined()
    expect(reader.cache.getStats().fencedWrites).toBe(1)
  })

  it('a delete while the loader runs keeps the loaded value out of L1 and Redis', async () => {
    run++
    const { cache, memory, layer } = instance()
    const { loader, started, release } = gatedLoader('loaded-before-delete')
    const loading = cache.getOrSet('k', loader)
    await started // the loader runs
    await cache.delete('k')
    release()
    expect(await loading).toBe('loaded-before-delete')
    expect(memory.get('k')).toBeUndefined()
    expect(await layer.get('k')).toBeUndefined()
  })

  it('a set during a load wins over the load', async () => {
    run++
    const { cache } = instance()
    const { loader, started, release } = gatedLoader('stale')
    const loading = cache.getOrSet('k', loader)
    await started // the loader runs
    await cache.set('k', 'fresh')
    release()
    await loading
    expect(await cache.get('k')).toBe('fresh')
    expect(await instance().cache.get('k')).toBe('fresh')
  })

  it('thousands of concurrent loads and update-then-delete never leave a stale value behind', async () => {
    run++
    const { cache } = instance()
    let version = 0
    let stale = 0
    const iterations = 2_000
    for (let i = 0; i < iterations; i++) {
      const key = `item:${i % 20}`
      const loads = Array.from({ length: 3 }, () =>
        cache.getOrSet(key, async () => {
          const seen = version
          await jitter()
          return seen
        }),
      )
      const update = (async () => {
        await jitter()
        version++
        await cache.delete(key)
      })()
      await Promise.all([...loads, update])
      const cached = await cache.get<number>(key)
      if (cached !== undefined && cached !== version) stale++
      const fromRedis = await instance().cache.get<number>(key)
      if (fromRedis !== undefined && fromRedis !== version) stale++
    }
    expect(stale).toBe(0)
    expect(cache.getStats().fencedWrites).toBeGreaterThan(0)
  }, 60_000) // thousands of real concurrent loads: 8-14 s quiet, more beside other work
})
