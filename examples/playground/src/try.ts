// `pnpm playground` runs this file against the workspace's sources (no build). Change it, or copy it to
// examples/playground/scratch/ (git-ignored) and run `pnpm playground examples/playground/scratch/<file>`.
// Redis: REDIS_URL when set (its keys here are removed at the end), else a throwaway redis-server.
import { connectRedis } from '@layercache/test-utils/example-redis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'

const redis = await connectRedis()
console.log(`Redis: ${redis.description}`)
const prefix = `playground:${process.pid}:`
redis.removeOnClose(prefix)
const layers = [new MemoryLayer({ ttl: 60_000, maxSize: 1_000 })]
const cache = new CacheStack(
  redis.client === undefined
    ? layers
    : [...layers, new RedisLayer({ client: redis.client, ttl: 300_000, prefix })],
)

try {
  let loads = 0
  const load = async () => ({ id: 1, name: 'Espresso machine', loadedAt: ++loads })
  console.log(await cache.getOrSet('product:1', load, { tags: ['products'] }))
  console.log(await cache.getOrSet('product:1', load)) // a memory hit: the loader ran once
  await cache.invalidateByTag('products')
  console.log(await cache.getOrSet('product:1', load)) // loaded again
  const { hits, misses, loaderCalls } = cache.getStats()
  console.log({ hits, misses, loaderCalls })
} finally {
  cache.close()
  await redis.close()
}
