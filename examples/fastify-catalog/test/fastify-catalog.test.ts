import { getTestRedis } from '@layercache/test-utils'
import { Catalog, runStory } from '@layercache/test-utils/example-catalog'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { expect, it } from 'vitest'
import { createApp } from '../src/app'

it('examples/fastify-catalog: miss, hit, 304, one database read for a cold stampede, a write purges its pages', async () => {
  const redis = await getTestRedis()
  const cache = new CacheStack([
    new MemoryLayer({ ttl: 60_000 }),
    new RedisLayer({ client: redis.createClient(), prefix: redis.keyPrefix }),
  ])
  const catalog = new Catalog()
  const app = await createApp(cache, catalog)
  try {
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const summary = await runStory(base, catalog, () => {})
    expect(summary).toEqual({
      first: 'MISS',
      second: 'HIT',
      notModified: 304,
      concurrent: 200,
      readsForConcurrent: 1,
      priceAfterWrite: 45,
      afterWrite: 'MISS',
    })
  } finally {
    await app.close()
    cache.close()
    await redis.close()
  }
})
