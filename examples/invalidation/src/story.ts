import type { Redis } from 'ioredis'
import { type CacheLayer, CacheStack, InvalidationRules, MemoryLayer, RedisLayer } from 'layercache'
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
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20))

/**
 * The story of ../../shared seed 002, end to end: price changes must show at once, a category update
 * touches 500 products, and the homepage depends on the featured products. Two "instances" share Redis
 * when there is one; `log` narrates.
 */
export async function runInvalidationStory(
  client: Redis | undefined,
  log: (line: string) => void = console.log,
): Promise<StorySummary> {
  const db = new CatalogDb()
  const prefix = `shop-demo-${process.pid}-${Date.now()}`
  const layers = (withMemory: boolean): CacheLayer[] => [
    ...(withMemory ? [new MemoryLayer({ ttl: 60_000 })] : []),
    ...(client ? [new RedisLayer({ client, prefix, ttl: 3_600_000 })] : []),
  ]
  const app = new CacheStack(layers(true), { generation: 1, generationCleanup: { batchSize: 200 } })
  // A second service reading the same Redis (without a memory layer of its own until the bus lands).
  const worker = client ? new CacheStack(layers(false), { generation: 1 }) : app

  const loadProduct = (cache: CacheStack, id: number) =>
    cache.getOrSet<Product>(
      `product:${id}`,
      async (ctx) => {
        const p = await db.product(id)
        ctx.setTags([`category:${p.category}`])
        return p
      },
      { ttl: 3_600_000 },
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
  await rules.handle('product.price-changed', { id: 1, category: 'electronics' })
  await settle()
  const queriesBefore = db.queries
  const homepage = (await app.get<string>('homepage')) ?? ''
  const refilled = db.queries === queriesBefore && homepage.includes('$42')
  log(`Price of product 1 → $42. Homepage (refilled by its warmer): ${homepage.slice(0, 40)}…`)
  const workerPrice = (await loadProduct(worker, 1)).price
  const seenByWorker = workerPrice === 42
  log(`The other instance reads product 1 at $${workerPrice}.`)

  // 2. A category-wide discount: 500 products by tag, every search page by prefix.
  db.discountCategory('electronics', 10)
  const invalidated = await app.invalidateByTag('category:electronics')
  const searches = await app.invalidateByPrefix('search:')
  log(`Discount on electronics: ${invalidated} keys invalidated by tag, ${searches} search pages by prefix.`)

  // 3. A deploy with a new schema: one bump, every instance misses at once.
  await app.bumpGeneration()
  let misses = 0
  for (const id of [1, 2, 600]) if ((await worker.get(`product:${id}`)) === undefined) misses++
  log(`New generation ${app.generation}: ${misses} of 3 reads on the other instance miss.`)
  await settle()

  const homepageNow = (await app.get<string>('homepage')) ?? '(not cached)'
  log(`Homepage in the new generation, refilled by its warmer: ${homepageNow.slice(0, 40)}…`)
  return {
    redis: client !== undefined,
    homepageAfterDiscount: homepageNow,
    homepageRefilledBeforeFirstRead: refilled,
    otherInstanceSawNewPrice: seenByWorker,
    categoryKeysInvalidated: invalidated,
    searchPagesInvalidated: searches,
    missesAfterDeploy: misses,
    dbQueries: db.queries,
  }
}
