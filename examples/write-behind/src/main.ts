import { connectPostgres } from '@layercache/test-utils/example-postgres'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { openShop, runOrderStory } from './story'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(
    `This example needs Redis (the queue is a Redis Stream): ${redis.description}. Set REDIS_URL.`,
  )
  process.exit(1)
}
const client = redis.client
console.log(`Using ${redis.description}.`)
const pool = await connectPostgres()
const run = `${process.pid}_${Date.now().toString(36)}`
const names = {
  table: `example_orders_${run}`,
  queue: `example-orders-${run}`,
  cachePrefix: `example-orders-${run}:`,
}
// Every key of the run goes on exit: the cache's (the layer's own included) and the queue's streams.
redis.removeOnClose(names.cachePrefix)
redis.removeOnClose(`lc:wb:{${names.queue}}`)
const shop = await openShop(client, pool, names)

// The demo leaves nothing behind: its table, its queue and its cache entries go.
let cleaning: Promise<void> | undefined
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await shop.db.drop()
    await pool.end()
    await redis.close()
  })()
  return cleaning
}

// A service's graceful shutdown: stop taking writes, drain the queue into PostgreSQL, then exit. Ctrl-C
// during the story runs the same path.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    console.log(`${signal}: draining the write-behind queue …`)
    shop
      .shutdown(10_000)
      .then(
        () => console.log('Drained.'),
        (error: unknown) => console.error('Could not drain; the entries stay in Redis:', error),
      )
      .finally(() => cleanUp().finally(() => process.exit(0)))
  })
}

try {
  await runOrderStory(shop, client)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await shop.shutdown().catch(() => {})
  await cleanUp()
}
