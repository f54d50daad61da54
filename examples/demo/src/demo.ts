import { type ConnectOptions, connectRedis } from '@layercache/test-utils/example-redis'
import type { Redis } from 'ioredis'
import { type CacheLayer, CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { type Product, ProductDb } from './product-db'

export interface DemoSummary {
  readonly redis: boolean
  readonly stampedeCallers: number
  readonly stampedeQueries: number
  readonly priceAfterUpdate: number
  readonly layerHits: Record<string, number>
  readonly dbQueries: number
}

/** One app instance: its own memory layer over the shared Redis. */
function createInstance(redis: Redis | undefined, prefix: string): CacheStack {
  const layers: CacheLayer[] = [new MemoryLayer({ ttl: 30_000, maxSize: 1_000 })]
  if (redis) layers.push(new RedisLayer({ client: redis, ttl: 300_000, prefix }))
  return new CacheStack(layers)
}

export async function runDemo(
  log: (line: string) => void = console.log,
  connect: ConnectOptions = {},
): Promise<DemoSummary> {
  const redis = await connectRedis(connect)
  log(`Using ${redis.description}.`)
  const prefix = `layercache-demo:${process.pid}:${Date.now()}`
  const db = new ProductDb()
  const appA = createInstance(redis.client, prefix)
  const appB = createInstance(redis.client, prefix)
  appA.on('hit', ({ key, layer }) => log(`  app A: hit  ${key} in ${layer}`))
  appB.on('hit', ({ key, layer }) => log(`  app B: hit  ${key} in ${layer}`))
  appA.on('miss', ({ key }) => log(`  app A: miss ${key}, asking the database`))
  appB.on('miss', ({ key }) => log(`  app B: miss ${key}, asking the database`))
  const loadProduct = (id: string) => () => db.findProduct(id)
  const products = (app: CacheStack) => app.namespace('product')

  try {
    log('\n1. Cache-aside read: the first read misses, the second is a memory hit.')
    await products(appA).getOrSet('1', loadProduct('1'))
    await products(appA).getOrSet('1', loadProduct('1'))

    if (redis.client) {
      log('\n2. A second instance shares Redis: it hits L2 and back-fills its own memory layer.')
      await products(appB).getOrSet('1', loadProduct('1'))
      await products(appB).getOrSet('1', loadProduct('1'))
    }

    log('\n3. Stampede: 100 concurrent requests for a cold key run the query once.')
    const before = db.queries
    const callers = 100
    const results = await Promise.all(
      Array.from({ length: callers }, () => products(appA).getOrSet('2', loadProduct('2'))),
    )
    const stampedeQueries = db.queries - before
    log(`  ${callers} callers got "${(results[0] as Product).name}" with ${stampedeQueries} database query`)

    log('\n4. Invalidation: the price changes, the key is deleted, the next read sees the new price.')
    await db.updatePrice('1', 299)
    await products(appA).delete('1')
    // App B still holds its own memory copy until the invalidation bus (a later feature) tells it;
    // here it drops it explicitly, as a peer would on receiving the bus message.
    await products(appB).delete('1')
    const fresh = (await products(appB).getOrSet('1', loadProduct('1'))) as Product
    log(`  app B now serves price ${fresh.price}`)

    const stats = appA.getStats()
    const layerHits: Record<string, number> = {}
    for (const layer of stats.layers) layerHits[layer.name] = layer.hits
    log('\nApp A stats:')
    for (const layer of stats.layers)
      log(`  ${layer.name.padEnd(7)} hits ${layer.hits}, misses ${layer.misses}`)
    log(
      `  loader calls ${stats.loaderCalls}, coalesced ${stats.coalesced}, hit rate ${stats.hitRate.toFixed(2)}`,
    )
    log(`Database queries in total: ${db.queries}`)
    return {
      redis: redis.client !== undefined,
      stampedeCallers: callers,
      stampedeQueries,
      priceAfterUpdate: fresh.price,
      layerHits,
      dbQueries: db.queries,
    }
  } finally {
    if (redis.client) await (appA.layers[1] as RedisLayer).clear()
    await redis.close()
  }
}
