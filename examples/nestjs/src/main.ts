/**
 * # examples/nestjs: a NestJS catalog service on layercache
 *
 * A product catalog as NestJS users write one, on a CacheStack of MemoryLayer (L1) over RedisLayer (L2)
 * with a signed invalidation bus and the fleet-wide single-flight coordinator:
 *
 *   GET    /products/:id           @Cacheable: cached with the tag product:<id>, one query per cold product
 *   PUT    /products/:id/price     {"price"}: @CacheInvalidate drops product:<id>, the method its category list
 *   GET    /categories/:name       @Cacheable: the category's products, tagged category:<name>
 *   POST   /sessions               {"user"}: CACHE_MANAGER.set, @nestjs/cache-manager on the same stack
 *   GET    /sessions/:id           CACHE_MANAGER.get
 *   DELETE /sessions/:id           CACHE_MANAGER.del
 *
 * `start` runs two instances (A and B) in this process, each with its own memory layer, Redis connections
 * and bus subscriber, as two processes would have, and plays a story against them over HTTP: cached reads,
 * 1000 concurrent requests for a cold product (one query), a price change on A that B's memory drops at
 * once, a session opened on A and closed on B, a shutdown that closes everything. `serve` starts one
 * instance and keeps it up for curl (PORT, default 3000; Ctrl-C stops it).
 *
 *   pnpm --filter @layercache/example-nestjs start
 *   pnpm --filter @layercache/example-nestjs serve
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own. Every key and channel is under a prefix of
 * the run, removed on exit. The database is a map in memory (src/catalog-db.ts) that counts its queries.
 *
 * Files: src/catalog.ts (the service with the decorators, the controllers), src/app.ts (the stack, the
 * modules, the shutdown), src/story.ts, test/nestjs.test.ts.
 */
import 'reflect-metadata'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { startCatalogApp } from './app'
import { CatalogDb } from './catalog-db'
import { runNestStory } from './story'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis (its instances share it): ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
console.log(`Using ${redis.description}.`)
const { host, port } = redis.client.options
const redisUrl = process.env.REDIS_URL ?? `redis://${host}:${port}`
const prefix = `example-nestjs-${process.pid}-${Date.now().toString(36)}:`
redis.removeOnClose(prefix) // every key of the run, the layers' own included

if (process.argv.includes('--serve')) {
  const app = await startCatalogApp({
    name: 'catalog',
    redisUrl,
    prefix,
    db: new CatalogDb(),
    port: Number(process.env.PORT ?? 3000),
  })
  console.log(`The catalog service listens on ${app.url}. Try:
  curl ${app.url}/products/1
  curl -X PUT -H 'content-type: application/json' -d '{"price":199}' ${app.url}/products/1/price
  curl ${app.url}/categories/tools`)
  const stop = async () => {
    await app.close()
    await redis.close()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
} else {
  try {
    await runNestStory(redisUrl, prefix)
  } catch (error) {
    console.error(error)
    process.exitCode = 1
  } finally {
    await redis.close()
  }
}
