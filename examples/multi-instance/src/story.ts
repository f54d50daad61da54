import { randomBytes } from 'node:crypto'
import { removePrefix } from '@layercache/test-utils/example-redis'
import { Redis } from 'ioredis'
import { type AppProcess, startFleet, stopFleet } from './fleet'
import { ProductDatabase } from './product-database'

export interface StorySummary {
  readonly apps: readonly string[]
  /** Where each app served product 1 from on its second read, before the change. */
  readonly servedBefore: readonly unknown[]
  /** The price each app served right after app-a changed it. */
  readonly pricesAfter: readonly unknown[]
  /** Where each app served it from after the change (never its stale memory). */
  readonly servedAfter: readonly unknown[]
  /** Apps that heard app-a's invalidation on the bus. */
  readonly heardBy: readonly string[]
  /** Requests in the cold-key stampede, and the database reads they caused across all apps. */
  readonly stampedeRequests: number
  readonly stampedeDatabaseReads: number
}

async function waitUntil(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the invalidation to travel')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Three app processes on one Redis; a price change on one reaches the others' memory at once. */
export async function runMultiInstanceStory(
  redisUrl: string,
  log: (line: string) => void = console.log,
  /** Where the fleet keeps its keys and channels; removed at the end, so unique to the run. */
  shop = `shop-${randomBytes(4).toString('hex')}:`,
): Promise<StorySummary> {
  const redis = new Redis(redisUrl)
  let apps: AppProcess[] = []
  try {
    const db = new ProductDatabase(redis, shop)
    await db.seed([
      { id: '1', name: 'Espresso machine', price: 10 },
      { id: '2', name: 'Grinder', price: 99 },
    ])
    apps = await startFleet(redisUrl, 3, shop)
    log(`Started ${apps.map((app) => `${app.name} (port ${app.port})`).join(', ')}, sharing one Redis.`)

    const servedBefore: unknown[] = []
    for (const app of apps) {
      // A bus that hears another instance for the first time flushes its memory once (it cannot know what
      // that instance sent before): in the first second of a fleet, a second read may still miss memory.
      let second: Record<string, unknown> = {}
      for (let attempt = 0; attempt < 50 && second.servedFrom !== 'memory'; attempt++) {
        await app.get('/products/1')
        second = await app.get('/products/1')
      }
      servedBefore.push(second.servedFrom)
      const product = second.product as { price: number }
      log(
        `${app.name}: $${product.price} from ${second.servedFrom} (database reads so far: ${second.databaseReads})`,
      )
    }

    const [writer, ...others] = apps as [AppProcess, ...AppProcess[]]
    log(`${writer.name}: the price changes to $12 (database updated, cache.delete('product:1'))`)
    const started = performance.now()
    await writer.put('/products/1?price=12')
    await waitUntil(() => others.every((app) => app.heard.length > 0))
    log(
      `The others dropped it from memory ${(performance.now() - started).toFixed(1)} ms after the request began.`,
    )

    const pricesAfter: unknown[] = []
    const servedAfter: unknown[] = []
    for (const app of apps) {
      const answer = await app.get('/products/1')
      const product = answer.product as { price: number }
      pricesAfter.push(product.price)
      servedAfter.push(answer.servedFrom)
      log(`${app.name}: $${product.price} from ${answer.servedFrom}`)
    }
    // A cold, popular product: 50 concurrent requests on each app at once.
    const readsBefore = await db.reads()
    const requests = apps.flatMap((app) => Array.from({ length: 50 }, () => app.get('/products/2')))
    const answers = await Promise.all(requests)
    const stampedeDatabaseReads = (await db.reads()) - readsBefore
    if (answers.some((answer) => (answer.product as { price: number }).price !== 99)) {
      throw new Error('a stampede request got a wrong answer')
    }
    log(
      `${requests.length} concurrent requests for a cold product over ${apps.length} apps: ` +
        `${stampedeDatabaseReads} database read(s) in all (fleet-wide single-flight).`,
    )
    return {
      stampedeRequests: requests.length,
      stampedeDatabaseReads,
      apps: apps.map((app) => app.name),
      servedBefore,
      pricesAfter,
      servedAfter,
      heardBy: others.filter((app) => app.heard.length > 0).map((app) => app.name),
    }
  } finally {
    await stopFleet(apps)
    // Everything of the run: the products, the cache (the layer's own keys included), leases, the bus.
    await removePrefix(redis, shop)
    redis.disconnect()
  }
}
