/**
 * # examples/express-catalog: Express pages cached by @layercache/express
 *
 *   GET /products        the list, cached, tagged `products`
 *   GET /products/:id    one product, cached, tagged `product:<id>` (a 404 is not stored)
 *   PUT /products/:id    changes the price, then purges `product:<id>` and `products`
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-express-catalog start   # starts the app, plays a client against it
 *   pnpm --filter @layercache/example-express-catalog serve   # keeps it up for curl; Ctrl-C stops
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own. PORT picks the port (default: any free one).
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { Catalog, runStory } from '@layercache/test-utils/example-catalog'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { createApp } from './app'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis for its second layer: ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
console.log(`Using ${redis.description}.`)
const prefix = `example-express-${process.pid}:`
redis.removeOnClose(prefix)
const cache = new CacheStack([
  new MemoryLayer({ ttl: 60_000 }),
  new RedisLayer({ client: redis.client, prefix }),
])
const catalog = new Catalog()
const server = createApp(cache, catalog).listen(Number(process.env.PORT ?? 0), '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
console.log(`Express listens on ${base}\n`)
await runStory(base, catalog, (line) => console.log(line))

async function stop() {
  server.closeAllConnections()
  server.close()
  cache.close()
  await redis.close()
}
if (process.argv.includes('--serve')) {
  console.log(
    `\nTry: curl -i ${base}/products/3   (twice), then curl -X PUT -H 'content-type: application/json' -d '{"price":12}' ${base}/products/3`,
  )
  process.once('SIGINT', () => void stop())
} else await stop()
