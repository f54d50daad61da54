/**
 * # examples/cache-manager: cache-manager code moved onto layercache, unchanged
 *
 * src/prices.ts is application code written for cache-manager 7 (`wrap` to read, `del` after a write). The
 * story runs it on two app instances twice:
 *
 * 1. on the usual cache-manager set-up, a memory Keyv over @keyv/redis: A changes a price and deletes it;
 *    B's memory tier still answers the old price (until its TTL);
 * 2. on a layercache stack (memory over Redis, with an invalidation bus) through @layercache/keyv, the one
 *    line that changes being the store: B answers the new price, and `stack.invalidateByTag('prices')`
 *    removes every price cache-manager wrote, on both instances.
 *
 *   pnpm --filter @layercache/example-cache-manager start
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own; every key is under a prefix of the run,
 * removed on exit. The test (test/cache-manager.test.ts) runs the same story.
 */
import { connectRedis } from '@layercache/test-utils/example-redis'
import { runCacheManagerStory } from './story'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis (its instances share it): ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
console.log(`Using ${redis.description}.`)
const { host, port } = redis.client.options
const prefix = `example-cache-manager-${process.pid}-${Date.now().toString(36)}:`
redis.removeOnClose(prefix)
try {
  await runCacheManagerStory(process.env.REDIS_URL ?? `redis://${host}:${port}`, prefix)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await redis.close()
}
