import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { getTestRedis } from '@layercache/test-utils'
import { Catalog, runStory } from '@layercache/test-utils/example-catalog'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { expect, it } from 'vitest'
import { createApp } from '../src/app'

it('examples/hono-catalog: miss, hit, 304, one database read for a cold stampede, a write purges its pages', async () => {
  const redis = await getTestRedis()
  const cache = new CacheStack([
    new MemoryLayer({ ttl: 60_000 }),
    new RedisLayer({ client: redis.createClient(), prefix: redis.keyPrefix }),
  ])
  const catalog = new Catalog()
  const server = serve({ fetch: createApp(cache, catalog).fetch, port: 0, hostname: '127.0.0.1' }) as Server
  try {
    if (!server.listening) await once(server, 'listening')
    const summary = await runStory(
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      catalog,
      () => {},
    )
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
    server.closeAllConnections()
    server.close()
    cache.close()
    await redis.close()
  }
})
