/**
 * # examples/http-postgres: a CacheStack in a real HTTP service backed by PostgreSQL
 *
 * A product service on node:http (no framework) with a products table in PostgreSQL and a cache of two
 * layers in front of it: MemoryLayer (L1, this process) over RedisLayer (L2, shared).
 *
 *   GET    /products/:id             cache-aside with getOrSet; the entry is tagged `category:<c>`
 *   GET    /categories/:c/products   one cached list per category, tagged `category:<c>`
 *   PUT    /products/:id             UPDATE + COMMIT, then invalidate the key and the category tag(s)
 *   DELETE /products/:id             DELETE + COMMIT, then the same invalidation
 *   GET    /stats                    cache.getStats() and the queries PostgreSQL answered
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-http-postgres start   # starts the service, plays a client against it
 *   pnpm --filter @layercache/example-http-postgres serve   # starts it and keeps it up for curl; Ctrl-C stops
 *
 * Needs PostgreSQL: DATABASE_URL, by default postgres://postgres@127.0.0.1:5432/test. Redis: REDIS_URL,
 * else a throwaway redis-server of its own. The products table and the cache keys get names unique to
 * the run and are removed on exit. PORT picks the port of `serve` (default: any free one); READ_DELAY_MS
 * the latency added to each SELECT (default 20, a busy database).
 *
 * Files: src/products-db.ts (the table, counting its queries), src/service.ts (the routes and the cache:
 * read there why the invalidation comes after the COMMIT), src/story.ts (the client's story), and
 * test/http-postgres.test.ts (no stale read after a write, a one-query stampede, lists after a move).
 */

import { connectPostgres } from '@layercache/test-utils/example-postgres'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { ProductsDb } from './products-db'
import { startProductService } from './service'
import { runProductStory } from './story'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis for its second layer: ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
const client = redis.client
console.log(`Using ${redis.description}.`)
const pool = await connectPostgres()
const run = `${process.pid}_${Date.now().toString(36)}`
const cachePrefix = `example-products-${run}:`
redis.removeOnClose(cachePrefix) // every key of the run, the layer's own included, goes on exit
const db = new ProductsDb(pool, `example_products_${run}`)
db.readDelayMs = Number(process.env.READ_DELAY_MS ?? 20) // a busy database: every SELECT takes 20 ms more
await db.createAndSeed()
console.log(`Seeded ${db.seeded} products into PostgreSQL table ${db.table}.`)
const service = await startProductService({
  redis: client,
  db,
  cachePrefix,
  port: Number(process.env.PORT ?? 0),
})
console.log(`The product service listens on ${service.url}.`)

// The example leaves nothing behind: its table and its cache entries go.
let cleaning: Promise<void> | undefined
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await service.close()
    await db.drop()
    await pool.end()
    await redis.close()
  })()
  return cleaning
}

if (process.argv.includes('--serve')) {
  console.log(`Try:
  curl ${service.url}/products/1
  curl ${service.url}/categories/kitchen/products
  curl -X PUT -H 'content-type: application/json' -d '{"priceCents": 15900}' ${service.url}/products/1
  curl -X PUT -H 'content-type: application/json' -d '{"category": "garden"}' ${service.url}/products/1
  curl -X DELETE ${service.url}/products/7
  curl ${service.url}/stats
Ctrl-C stops the service and drops the table.`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanUp().finally(() => process.exit(0))
    })
  }
} else {
  try {
    await runProductStory(service.url)
  } catch (error) {
    console.error(error)
    process.exitCode = 1
  } finally {
    await cleanUp()
  }
}
