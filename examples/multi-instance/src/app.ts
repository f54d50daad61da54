// One app instance: an HTTP service with a CacheStack (memory over Redis) and a signed invalidation bus.
// Started by fleet.ts as its own process; tells its parent the port it listens on.
import { createServer } from 'node:http'
import { Redis } from 'ioredis'
import {
  CacheStack,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
} from 'layercache'
import { ProductDatabase } from './product-database'

const name = process.env.APP_NAME ?? `app-${process.pid}`
// Where this fleet's keys and channels live (one per run: runs sharing a Redis never meet).
const shop = process.env.SHOP_PREFIX ?? 'shop:'
const redisUrl = process.env.REDIS_URL
// Started by main.ts, which always sets it; new Redis(undefined) would quietly use 127.0.0.1:6379.
if (redisUrl === undefined) throw new Error('REDIS_URL is not set')
const redis = new Redis(redisUrl)
const bus = new RedisInvalidationBus({
  publisher: redis,
  subscriber: new Redis(redisUrl), // a subscribed connection cannot send commands: a second one
  channel: `${shop}invalidation`,
  signingSecret: process.env.LAYERCACHE_INVALIDATION_SECRET,
})
const memory = new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })
const coordinator = new RedisSingleFlightCoordinator({ client: redis, prefix: `${shop}sf:` })
const cache = new CacheStack(
  [memory, new RedisLayer({ client: redis, ttl: 3_600_000, prefix: `${shop}cache:` })],
  {
    invalidationBus: bus,
    singleFlightCoordinator: coordinator, // one database read per key for the whole fleet
  },
)
const db = new ProductDatabase(redis, shop)
let databaseReads = 0

interface Product {
  readonly id: string
  readonly name: string
  readonly price: number
}

/** GET /products/:id → the product, plus where this instance found it. PUT /products/:id?price=… updates it. */
const server = createServer(async (request, response) => {
  const url = new URL(request.url ?? '/', 'http://app')
  const id = /^\/products\/(\w+)$/.exec(url.pathname)?.[1]
  const reply = (status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' })
    response.end(JSON.stringify(body))
  }
  try {
    if (id === undefined) return reply(404, { error: 'try /products/1' })
    const key = `product:${id}`
    if (request.method === 'PUT') {
      const price = Number(url.searchParams.get('price'))
      await db.updatePrice(id, price)
      await cache.delete(key) // gone from Redis, from this memory, and (through the bus) from the others'
      return reply(200, { app: name, updated: id, price })
    }
    const inMemory = memory.has(key)
    const product = await cache.getOrSet<Product | undefined>(key, async () => {
      databaseReads++
      return db.find(id)
    })
    reply(200, { app: name, product, servedFrom: inMemory ? 'memory' : 'redis or database', databaseReads })
  } catch (error) {
    reply(500, { app: name, error: (error as Error).message })
  }
})

server.listen(0, '127.0.0.1', async () => {
  await bus.ready // listening for the others' invalidations before taking traffic
  const address = server.address()
  process.send?.({ name, port: typeof address === 'object' && address ? address.port : 0 })
})

cache.on('peerInvalidation', ({ operations }) => {
  process.send?.({ name, heard: operations })
})

process.on('disconnect', async () => {
  server.close()
  cache.close()
  await bus.close()
  await coordinator.close()
  redis.disconnect()
  process.exit(0)
})
