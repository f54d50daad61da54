import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { connectPostgres } from '@layercache/test-utils/example-postgres'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ProductsDb } from '../src/products-db'
import { type ProductService, startProductService } from '../src/service'
import { productClient, runProductStory } from '../src/story'

let redis: TestRedis
let client: Redis
let pool: pg.Pool
const services: ProductService[] = []

beforeAll(async () => {
  // PostgreSQL: DATABASE_URL, else postgres@127.0.0.1:5432/test; an unreachable server fails the file loudly.
  pool = await connectPostgres()
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(async () => {
  for (const service of services) {
    await service.close()
    await service.db.drop()
  }
  await pool?.end()
  await redis?.close()
})

/** A service on a table and a cache prefix of its own, so tests (and test files) never share state. */
async function start(readDelayMs = 0): Promise<ProductService> {
  const name = `${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  const db = new ProductsDb(pool, `http_example_${name}`)
  db.readDelayMs = readDelayMs
  await db.createAndSeed()
  const service = await startProductService({ redis: client, db, cachePrefix: `${redis.keyPrefix}${name}` })
  services.push(service)
  return service
}

// Generous: the suite shares the machine with every other test file (no timing is asserted).
describe('examples/http-postgres', { timeout: 60_000 }, () => {
  it('tells the story: hits skip PostgreSQL, writes show at once, lists follow a move', async () => {
    const service = await start(20)
    const lines: string[] = []
    const summary = await runProductStory(service.url, (line) => lines.push(line))

    expect(summary.coldReadQueries).toBe(1)
    expect(summary.warmReadQueries).toBe(0)
    expect(summary.warmReadMemoryHits).toBe(1)
    expect(summary.listColdQueries).toBe(1)
    expect(summary.listWarmQueries).toBe(0)
    expect(summary.priceReadAfterPut).toBe(summary.priceSet)
    expect(summary.categoryChanged).toEqual({ from: 'kitchen', to: 'garden' })
    expect(summary.inOldCategoryList).toBe(false)
    expect(summary.inNewCategoryList).toBe(true)
    expect(summary.statusAfterDelete).toBe(404)
    expect(summary.deletedStillListed).toBe(false)
    expect(summary.stampedeRequests).toBe(100)
    expect(summary.stampedeQueries).toBe(1)
    expect(summary.stampedeAllAnswered).toBe(true)
    expect(lines.length).toBe(10)
  })

  it('answers repeated reads from the cache without querying PostgreSQL', async () => {
    const service = await start()
    const api = productClient(service.url)
    for (let id = 1; id <= 8; id++) await api.product(id)
    await api.category('office')
    const before = await api.stats()
    expect(before.db.reads).toBe(9)

    for (let round = 0; round < 3; round++) {
      for (let id = 1; id <= 8; id++) expect((await api.product(id)).body.id).toBe(id)
      expect((await api.category('office')).body.products.map((p) => p.id)).toEqual([6, 7, 8])
    }
    const after = await api.stats()
    expect(after.db.reads).toBe(before.db.reads)
    expect(after.cache.hits - before.cache.hits).toBe(27)
    expect(after.cache.layers[0]!.hits - before.cache.layers[0]!.hits).toBe(27)
    // Both layers hold what was loaded: the product entries are in Redis under the layer's prefix.
    expect(await client.exists(`${service.cachePrefix}product:1`)).toBe(1)
  })

  it('shows every PUT on the very next GET, even with a read of the old row in flight', async () => {
    const service = await start(5)
    const api = productClient(service.url)
    await api.product(2)
    for (let round = 1; round <= 20; round++) {
      const priceCents = 10_000 + round
      // A cold read that starts before the write (it may read the old row) and finishes whenever.
      await service.cache.delete('product:2')
      const racing = api.product(2)
      const put = await api.update(2, { priceCents })
      expect(put.status).toBe(200)
      const next = await api.product(2)
      expect(next.body.priceCents).toBe(priceCents)
      await racing
      // Whatever the racing read loaded, it did not write the old row back.
      expect((await api.product(2)).body.priceCents).toBe(priceCents)
    }
  })

  it('drops a product from its old category list when its category changes', async () => {
    const service = await start()
    const api = productClient(service.url)
    const ids = async (category: string) => (await api.category(category)).body.products.map((p) => p.id)
    expect(await ids('garden')).toEqual([4, 5])
    expect(await ids('office')).toEqual([6, 7, 8])
    await api.product(4)

    const moved = await api.update(4, { category: 'office' })
    expect(moved.body.categoryChanged).toEqual({ from: 'garden', to: 'office' })
    expect(await ids('garden')).toEqual([5])
    expect(await ids('office')).toEqual([4, 6, 7, 8])
    expect((await api.product(4)).body.category).toBe('office')

    // A price change afterwards invalidates the new category's tag (the entry was re-tagged on reload).
    await api.update(4, { priceCents: 1 })
    const office = (await api.category('office')).body.products
    expect(office.find((p) => p.id === 4)?.priceCents).toBe(1)

    const removed = await api.remove(5)
    expect(removed.status).toBe(200)
    expect(await ids('garden')).toEqual([])
    expect((await api.product(5)).status).toBe(404)
  })

  it('reads PostgreSQL once for 100 concurrent requests of a cold product', async () => {
    const service = await start(20)
    const api = productClient(service.url)
    const before = await api.stats()
    const answers = await Promise.all(Array.from({ length: 100 }, () => api.product(3)))
    const after = await api.stats()
    expect(answers.every((answer) => answer.status === 200 && answer.body.name === 'Kettle')).toBe(true)
    expect(after.db.reads - before.db.reads).toBe(1)
    expect(after.cache.loaderCalls - before.cache.loaderCalls).toBe(1)
  })

  it('refuses bad input before touching the database', async () => {
    const service = await start()
    const api = productClient(service.url)
    expect((await api.call('GET', '/products/abc')).status).toBe(400)
    expect((await api.update(1, { priceCents: -5 })).status).toBe(400)
    expect((await api.update(1, { color: 'red' })).status).toBe(400)
    expect((await api.category('Not A Category')).status).toBe(400)
    expect((await api.update(999, { priceCents: 5 })).status).toBe(404)
    expect((await api.stats()).db.writes).toBe(0)
  })
})
