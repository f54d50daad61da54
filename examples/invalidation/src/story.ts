import type { Redis } from 'ioredis'
import {
  type CacheLayer,
  CacheStack,
  type CacheStats,
  type GetOrSetOptions,
  InvalidationRules,
  MemoryLayer,
  RedisLayer,
} from 'layercache'
import { CatalogDb, type Product } from './catalog-db'

/** The domain events of the shop, and what each one makes stale. */
interface ShopEvents {
  'product.price-changed': { id: number; category: string }
  'category.discounted': { category: string }
}

export interface StorySummary {
  readonly redis: boolean
  readonly homepageAfterDiscount: string
  readonly homepageRefilledBeforeFirstRead: boolean
  readonly otherInstanceSawNewPrice: boolean
  readonly categoryKeysInvalidated: number
  readonly searchPagesInvalidated: number
  readonly missesAfterDeploy: number
  readonly dbQueries: number
  readonly hotProduct: HotProductStep
  /** `app.getStats()` at the end of the story. */
  readonly stats: CacheStats
}

/** Step 4: a hot product served stale while one query refreshes it. */
export interface HotProductStep {
  readonly oldPrice: number
  readonly newPrice: number
  readonly requests: number
  /** How many of the concurrent requests were answered with the old price. */
  readonly answeredWithOldPrice: number
  /** Database queries from the burst until the refreshed value was in the cache. */
  readonly dbQueries: number
  /** Stack stats over the same span. */
  readonly loaderCalls: number
  readonly staleServed: number
  readonly backgroundRefreshes: number
  /** The price the next read returned. */
  readonly nextPrice: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`
/** Resolves once a warmer refilled `key` (the stack's `rewarm` event names the stored key). */
const rewarmed = (stack: CacheStack, key: string) =>
  new Promise<void>((resolve) => {
    const off = stack.on('rewarm', (event) => {
      if (event.key === key || event.key.endsWith(`:${key}`)) {
        off()
        resolve()
      }
    })
  })

/** Polls (every 10 ms) until `done` holds; fails after 10 s. */
const waitUntil = async (done: () => Promise<boolean>, what: string) => {
  const deadline = Date.now() + 10_000
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`)
    await sleep(10)
  }
}

/**
 * The story of ../../shared seed 002, end to end: price changes must show at once, a category update
 * touches 500 products, the homepage depends on the featured products, and a hot product's expiry must
 * not stampede the database. Two "instances" share Redis when there is one; `log` narrates, ending with
 * the stack's stats.
 */
export async function runInvalidationStory(
  client: Redis | undefined,
  log: (line: string) => void = console.log,
  /** The RedisLayer prefix: every key the story writes starts with it. */
  prefix = `shop-demo-${process.pid}-${Date.now()}:`,
): Promise<StorySummary> {
  const db = new CatalogDb()
  const memory = new MemoryLayer({ ttl: 60_000 })
  const layers = (withMemory: boolean): CacheLayer[] => [
    ...(withMemory ? [memory] : []),
    ...(client ? [new RedisLayer({ client, prefix, ttl: 3_600_000 })] : []),
  ]
  const app = new CacheStack(layers(true), { generation: 1, generationCleanup: { batchSize: 200 } })
  // A second service reading the same Redis (without a memory layer of its own until the bus lands).
  const worker = client ? new CacheStack(layers(false), { generation: 1 }) : app

  const loadProduct = (cache: CacheStack, id: number, options: GetOrSetOptions = { ttl: 3_600_000 }) =>
    cache.getOrSet<Product>(
      `product:${id}`,
      async (ctx) => {
        const p = await db.product(id)
        ctx.setTags([`category:${p.category}`])
        return p
      },
      options,
    )
  const renderHomepage = async () => {
    const ids = await app.getOrSet('featured', () => db.featuredIds(), {
      dependsOn: ['product:1', 'product:2', 'product:3'],
    })
    const featured = await Promise.all(ids.map((id) => loadProduct(app, id)))
    return featured.map((p) => `${p.name}: $${p.price}`).join(' | ')
  }

  // The homepage is critical: refill it as soon as anything it depends on is invalidated.
  app.addWarmer('homepage', renderHomepage, { dependsOn: ['featured'] })
  const rules = new InvalidationRules<ShopEvents>(app)
    .on('product.price-changed', (e) => ({ keys: [`product:${e.id}`], tags: [`listing:${e.category}`] }))
    .on('category.discounted', (e) => ({ tags: [`category:${e.category}`], prefixes: ['search:'] }))

  log(client ? 'Two app instances share Redis.' : 'No Redis: one instance on the memory layer alone.')
  await app.getOrSet('homepage', renderHomepage, { dependsOn: ['featured'] })
  for (let id = 1; id <= 500; id++) await loadProduct(app, id)
  await app.set('search:tv:page1', 'results', { tags: ['listing:electronics'] })
  await app.set('search:tv:page2', 'results')
  log(`Warm: homepage, 500 electronics, 2 search pages (${db.queries} queries).`)

  // 1. A price change: the product, its listing, and (through dependsOn) 'featured' and the homepage go.
  db.setPrice(1, 42)
  const homepageRefilled = rewarmed(app, 'homepage')
  await rules.handle('product.price-changed', { id: 1, category: 'electronics' })
  await homepageRefilled
  const queriesBefore = db.queries
  const homepage = (await app.get<string>('homepage')) ?? ''
  const refilled = db.queries === queriesBefore && homepage.includes('$42')
  log(`Price of product 1 → $42. Homepage (refilled by its warmer): ${homepage.slice(0, 40)}…`)
  const workerPrice = (await loadProduct(worker, 1)).price
  const seenByWorker = workerPrice === 42
  log(`The other instance reads product 1 at $${workerPrice}.`)

  // 2. A category-wide discount: 500 products by tag, every search page by prefix.
  db.discountCategory('electronics', 10)
  // The tag takes 'featured' and the homepage along (dependsOn): its warmer refills it once more.
  const refilledAfterDiscount = rewarmed(app, 'homepage')
  const invalidated = await app.invalidateByTag('category:electronics')
  const searches = await app.invalidateByPrefix('search:')
  // Before the deploy below, so the refill awaited there is the new generation's, not this one.
  await refilledAfterDiscount
  log(`Discount on electronics: ${invalidated} keys invalidated by tag, ${searches} search pages by prefix.`)

  // 3. A deploy with a new schema: one bump, every instance misses at once.
  const refilledAgain = rewarmed(app, 'homepage')
  await app.bumpGeneration()
  let misses = 0
  for (const id of [1, 2, 600]) if ((await worker.get(`product:${id}`)) === undefined) misses++
  log(`New generation ${app.generation}: ${misses} of 3 reads on the other instance miss.`)
  await refilledAgain

  const homepageNow = (await app.get<string>('homepage')) ?? '(not cached)'
  log(`Homepage in the new generation, refilled by its warmer: ${homepageNow.slice(0, 40)}…`)

  // 4. A hot product under load. Its price comes from a supplier feed that sends no event, so a short TTL
  // bounds how long an old price shows; staleWhileRevalidate keeps that expiry from ever blocking a shopper
  // or stampeding the database. (200 ms here so the story runs fast; minutes in a real shop.)
  const hot = 600
  const readHot = () => loadProduct(app, hot, { ttl: 200, staleWhileRevalidate: 60_000 })
  const oldPrice = (await readHot()).price
  const newPrice = 549
  db.setPrice(hot, newPrice)
  // A plain get() returns fresh values only: once it misses, the TTL has passed and the entry is stale.
  // Time must pass (the 200 ms TTL): polled, so the story goes on as soon as it has.
  await waitUntil(async () => (await app.get(`product:${hot}`)) === undefined, 'the hot product is stale')
  log(
    `Product ${hot} (ttl 200 ms, staleWhileRevalidate 60 s) is now stale; the feed changed its price to $${newPrice}.`,
  )
  const requests = 1000
  const queriesBeforeBurst = db.queries
  const statsBeforeBurst = app.getStats()
  db.latencyMs = 50 // the refresh query is slow, and nobody waits for it
  const started = performance.now()
  const answers = await Promise.all(Array.from({ length: requests }, () => readHot()))
  const answeredIn = performance.now() - started
  const answeredWithOldPrice = answers.filter((p) => p.price === oldPrice).length
  const refreshesUnderWay = app.getStats().backgroundRefreshes - statsBeforeBurst.backgroundRefreshes
  log(
    `${requests} concurrent requests answered in ${answeredIn.toFixed(1)} ms, ${answeredWithOldPrice} of them ` +
      `with the old $${oldPrice} (${plural(db.queries - queriesBeforeBurst, 'database query', 'database queries')} so far; ` +
      `${plural(refreshesUnderWay, 'background refresh', 'background refreshes')} under way).`,
  )
  // The refreshed value lands in the cache fresh again (read from the memory layer itself, stale or not: a
  // get() would see it only while it is fresh, and a slow poll could miss that).
  const inMemory = () => memory.get(`g${app.generation}:product:${hot}`)?.value as Product | undefined
  await waitUntil(async () => inMemory()?.price === newPrice, 'the refreshed value landed')
  db.latencyMs = 1
  const statsAfterBurst = app.getStats()
  const hotQueries = db.queries - queriesBeforeBurst
  const delta = (name: 'loaderCalls' | 'staleServed' | 'backgroundRefreshes') =>
    statsAfterBurst[name] - statsBeforeBurst[name]
  const nextPrice = (await readHot()).price
  log(
    `Refreshed by ${plural(hotQueries, 'database query', 'database queries')} (stats: ${plural(delta('loaderCalls'), 'loader call')}, ` +
      `${plural(delta('backgroundRefreshes'), 'background refresh', 'background refreshes')}, ${plural(delta('staleServed'), 'stale answer')}). ` +
      `The next read: $${nextPrice}.`,
  )

  // 5. What the cache did for the shop, from the stack's own counters.
  const stats = app.getStats()
  const perLayer = stats.layers.map((l) => `${l.name} ${l.hits}`).join(', ')
  log(
    `Stats: hit rate ${(stats.hitRate * 100).toFixed(1)} % (${plural(stats.hits, 'hit')}: ${perLayer}; ` +
      `${plural(stats.misses, 'miss', 'misses')}), ${plural(stats.loaderCalls, 'loader call')}, ` +
      `${plural(stats.invalidations, 'group invalidation')}, ${plural(stats.rewarmed, 'key')} rewarmed, ` +
      `${plural(stats.staleServed, 'stale answer')}, ${plural(stats.backgroundRefreshes, 'background refresh', 'background refreshes')}.`,
  )
  return {
    redis: client !== undefined,
    homepageAfterDiscount: homepageNow,
    homepageRefilledBeforeFirstRead: refilled,
    otherInstanceSawNewPrice: seenByWorker,
    categoryKeysInvalidated: invalidated,
    searchPagesInvalidated: searches,
    missesAfterDeploy: misses,
    dbQueries: db.queries,
    hotProduct: {
      oldPrice,
      newPrice,
      requests,
      answeredWithOldPrice,
      dbQueries: hotQueries,
      loaderCalls: delta('loaderCalls'),
      staleServed: delta('staleServed'),
      backgroundRefreshes: delta('backgroundRefreshes'),
      nextPrice,
    },
    stats,
  }
}
