import type { Product } from './products-db'
import type { ServiceStats } from './service'

export interface HttpResult<T = unknown> {
  readonly status: number
  readonly body: T
}

/** A tiny client for the service, as any other HTTP client would call it. */
export function productClient(url: string) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<HttpResult<T>> => {
    const response = await fetch(url + path, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    })
    return { status: response.status, body: (await response.json()) as T }
  }
  return {
    product: (id: number) => call<Product & { error?: string }>('GET', `/products/${id}`),
    category: (category: string) =>
      call<{ products: Product[] }>('GET', `/categories/${encodeURIComponent(category)}/products`),
    update: (id: number, change: Record<string, unknown>) =>
      call<{ product: Product; categoryChanged?: { from: string; to: string }; invalidated: unknown }>(
        'PUT',
        `/products/${id}`,
        change,
      ),
    remove: (id: number) => call<{ deleted: Product }>('DELETE', `/products/${id}`),
    stats: async () => (await call<ServiceStats>('GET', '/stats')).body,
    call,
  }
}

export interface StorySummary {
  /** Database reads caused by the first GET of product 1, then by the second. */
  readonly coldReadQueries: number
  readonly warmReadQueries: number
  /** Memory (L1) hits the second GET added. */
  readonly warmReadMemoryHits: number
  readonly listColdQueries: number
  readonly listWarmQueries: number
  /** The price the GET right after the PUT answered, and the price the PUT set. */
  readonly priceSet: number
  readonly priceReadAfterPut: number
  readonly categoryChanged: { from: string; to: string } | undefined
  /** Product 1 in the kitchen list and the garden list, read right after it moved kitchen → garden. */
  readonly inOldCategoryList: boolean
  readonly inNewCategoryList: boolean
  /** GET of a deleted product, and whether its category's list still shows it. */
  readonly statusAfterDelete: number
  readonly deletedStillListed: boolean
  readonly stampedeRequests: number
  readonly stampedeQueries: number
  readonly stampedeAllAnswered: boolean
  readonly stats: ServiceStats
}

const price = (cents: number) => `$${(cents / 100).toFixed(2)}`

/**
 * What a client of the service sees, step by step: a cold and a warm read, a cached category list, a
 * price change and a category change visible on the very next read, a delete, and a stampede of 100
 * concurrent requests for a cold product.
 */
export async function runProductStory(
  url: string,
  log: (line: string) => void = console.log,
): Promise<StorySummary> {
  const api = productClient(url)
  let last = await api.stats()
  /** Database reads and memory hits since the previous call. */
  const delta = async () => {
    const now = await api.stats()
    const change = {
      queries: now.db.reads - last.db.reads,
      memoryHits: (now.cache.layers[0]?.hits ?? 0) - (last.cache.layers[0]?.hits ?? 0),
      redisHits: (now.cache.layers[1]?.hits ?? 0) - (last.cache.layers[1]?.hits ?? 0),
    }
    last = now
    return change
  }

  // 1. Cache-aside: the first read goes to PostgreSQL, the second is answered from memory.
  const cold = await api.product(1)
  const coldCost = await delta()
  log(
    `GET /products/1 → ${cold.body.name}, ${price(cold.body.priceCents)}: a miss, ` +
      `${coldCost.queries} PostgreSQL query (now cached in memory and Redis, tagged category:${cold.body.category}).`,
  )
  await api.product(1)
  const warmCost = await delta()
  log(`GET /products/1 again → ${warmCost.queries} queries, ${warmCost.memoryHits} memory hit.`)

  // 2. A category list, cached as one entry with the category's tag.
  const kitchen = await api.category('kitchen')
  const listCold = await delta()
  await api.category('kitchen')
  const listWarm = await delta()
  log(
    `GET /categories/kitchen/products → ${kitchen.body.products.length} products: ${listCold.queries} query ` +
      `the first time, ${listWarm.queries} the second.`,
  )

  // 3. A price change: UPDATE … COMMIT, then the key and the category tag are invalidated.
  const priceSet = cold.body.priceCents - 2_000
  const updated = await api.update(1, { priceCents: priceSet })
  const afterPut = await api.product(1)
  const reload = await delta()
  log(
    `PUT /products/1 {"priceCents": ${priceSet}} → committed, then invalidated ` +
      `${JSON.stringify(updated.body.invalidated)}.`,
  )
  log(
    `GET /products/1 right after → ${price(afterPut.body.priceCents)} (${reload.queries} query: ` +
      `the reload after the invalidation). No stale read.`,
  )

  // 4. A category change: both the list it leaves and the list it joins must be invalidated.
  await api.category('garden') // cache the garden list too, so that both lists are cached before the move
  await delta()
  const moved = await api.update(1, { category: 'garden' })
  const oldList = await api.category('kitchen')
  const newList = await api.category('garden')
  const inOld = oldList.body.products.some((p) => p.id === 1)
  const inNew = newList.body.products.some((p) => p.id === 1)
  await delta()
  log(
    `PUT /products/1 {"category": "garden"} → moved from "${moved.body.categoryChanged?.from}" to ` +
      `"${moved.body.categoryChanged?.to}"; both category tags invalidated.`,
  )
  log(
    `Kitchen list: ${oldList.body.products.length} products, product 1 ${inOld ? 'STILL LISTED' : 'gone'}; ` +
      `garden list: ${newList.body.products.length} products, product 1 ${inNew ? 'listed' : 'MISSING'}.`,
  )

  // 5. A delete: the row goes, then its cached copy and its category's list.
  await api.category('office')
  await api.product(7)
  const removed = await api.remove(7)
  const afterDelete = await api.product(7)
  const officeAfter = await api.category('office')
  const deletedStillListed = officeAfter.body.products.some((p) => p.id === 7)
  await delta()
  log(
    `DELETE /products/7 (${removed.body.deleted.name}) → GET /products/7 answers ${afterDelete.status}; ` +
      `the office list has ${officeAfter.body.products.length} products.`,
  )

  // 6. A cold product, 100 requests at once: one query, the others wait for it (single-flight).
  const stampedeRequests = 100
  const coalescedBefore = last.cache.coalesced
  const answers = await Promise.all(Array.from({ length: stampedeRequests }, () => api.product(8)))
  const stampede = await delta()
  const stampedeAllAnswered = answers.every((a) => a.status === 200 && a.body.id === 8)
  const joined = last.cache.coalesced - coalescedBefore
  log(
    `${stampedeRequests} concurrent GET /products/8 (cold) → ${stampede.queries} PostgreSQL query: ` +
      `${joined} requests joined the load in flight, ${stampede.memoryHits} arrived after it and hit ` +
      `memory; every request answered: ${stampedeAllAnswered}.`,
  )

  const stats = await api.stats()
  log(
    `GET /stats → hit rate ${(stats.cache.hitRate * 100).toFixed(0)} % (memory ${stats.cache.layers[0]?.hits}, ` +
      `Redis ${stats.cache.layers[1]?.hits}), ${stats.cache.loaderCalls} loader calls, ` +
      `${stats.cache.coalesced} requests joined a load in flight; PostgreSQL: ${stats.db.reads} reads, ` +
      `${stats.db.writes} writes.`,
  )
  return {
    coldReadQueries: coldCost.queries,
    warmReadQueries: warmCost.queries,
    warmReadMemoryHits: warmCost.memoryHits,
    listColdQueries: listCold.queries,
    listWarmQueries: listWarm.queries,
    priceSet,
    priceReadAfterPut: afterPut.body.priceCents,
    categoryChanged: moved.body.categoryChanged,
    inOldCategoryList: inOld,
    inNewCategoryList: inNew,
    statusAfterDelete: afterDelete.status,
    deletedStillListed,
    stampedeRequests,
    stampedeQueries: stampede.queries,
    stampedeAllAnswered,
    stats,
  }
}
