import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { CacheStack, MemoryLayer, RedisLayer } from '../src'

// Tags a loader names only once it ran (ctx.setTags): the load's snapshot could not read their epochs,
// so its write-back compared them with "never invalidated" and was refused for ten minutes after any
// invalidation of such a tag: every read loaded again (the http-postgres example's stampede ran its
// query three times under load).

const redis = useRedisAndCluster()

describe.each(['standalone', 'cluster'] as const)('tags set by the loader (ctx.setTags) on %s', (target) => {
  const nextPrefix = () => redis.prefix(target, 'dyn')
  const stack = (prefix = nextPrefix()) =>
    new CacheStack([new MemoryLayer(), new RedisLayer({ client: redis.client(target), prefix })])

  it('a value is cached although its tag was invalidated before the load began', async () => {
    const cache = stack()
    await cache.invalidateByTag('category:office')
    let loads = 0
    const load = () =>
      cache.getOrSet('product:8', async (ctx) => {
        loads++
        ctx.setTags(['category:office'])
        return { id: 8 }
      })
    await load()
    await load()
    expect(loads).toBe(1)
    // And the tag still reaches it.
    expect(await cache.invalidateByTag('category:office')).toBe(1)
    await load()
    expect(loads).toBe(2)
  })

  it("another instance's tag invalidation while the loader runs still refuses its write-back", async () => {
    const prefix = nextPrefix()
    const cache = stack(prefix)
    const other = stack(prefix)
    let loads = 0
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let began!: () => void
    const loaderRunning = new Promise<void>((resolve) => {
      began = resolve
    })
    const first = cache.getOrSet('product:9', async (ctx) => {
      loads++
      began()
      await gate
      ctx.setTags(['category:garden'])
      return { id: 9, version: 1 }
    })
    // Any tag invalidation while the load runs: the load cannot know whether it was one of its tags.
    await loaderRunning
    await other.invalidateByTag('category:garden')
    release()
    expect(await first).toEqual({ id: 9, version: 1 })
    await cache.getOrSet('product:9', async () => {
      loads++
      return { id: 9, version: 2 }
    })
    expect(loads).toBe(2)
  })
})
