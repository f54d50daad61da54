import type { IncomingMessage, Server } from 'node:http'
import { closeServer, HttpError, jsonServer, listen, readJson } from '@layercache/test-utils/example-http'
import type { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, normalizePrefix, RedisLayer } from 'layercache'
import type { Product, ProductChange, ProductsDb } from './products-db'

export interface ProductServiceOptions {
  /** The Redis under the memory layer (you own the client: the service never closes it). */
  readonly redis: Redis
  readonly db: ProductsDb
  /** The RedisLayer prefix: every key the cache writes starts with it. */
  readonly cachePrefix: string
  /** Default 0: any free port. */
  readonly port?: number
}

export interface ProductService {
  readonly url: string
  readonly cache: CacheStack
  /** The RedisLayer prefix as used in Redis: the data of `product:1` is at `${cachePrefix}product:1`. */
  readonly cachePrefix: string
  readonly db: ProductsDb
  readonly server: Server
  /** Stops listening and drops open connections, then closes the cache (the Redis client and the pool stay open). */
  close(): Promise<void>
}

/** What GET /stats answers. */
export interface ServiceStats {
  readonly cache: ReturnType<CacheStack['getStats']>
  readonly db: { readonly reads: number; readonly writes: number }
}

/** The longest PUT body read, in characters. */
const MAX_BODY = 16_384
const CATEGORY = /^[a-z0-9-]{1,40}$/
const productKey = (id: number) => `product:${id}`
const listKey = (category: string) => `category:${category}:products`
const categoryTag = (category: string) => `category:${category}`

/**
 * The product service: node:http, no framework, a CacheStack of memory (L1) over Redis (L2) in front of
 * PostgreSQL.
 *
 *   GET    /products/:id                 cache-aside (getOrSet), tagged `category:<c>`
 *   GET    /categories/:c/products       the category's products, cached as one list, tagged `category:<c>`
 *   PUT    /products/:id                 {"priceCents"?, "name"?, "category"?}: UPDATE, COMMIT, invalidate
 *   DELETE /products/:id                 DELETE, COMMIT, invalidate
 *   GET    /stats                        cache.getStats() and the database queries made so far
 */
export async function startProductService(options: ProductServiceOptions): Promise<ProductService> {
  const { db } = options
  const cache = new CacheStack(
    [
      new MemoryLayer({ ttl: 60_000, maxSize: 10_000 }), // L1: this process, at most a minute
      new RedisLayer({ client: options.redis, prefix: options.cachePrefix, ttl: 3_600_000 }), // L2: shared
    ],
    { ttl: 600_000 },
  )
  // One instance here. With several behind a load balancer, give the stack an invalidationBus so the
  // others drop their memory copy too (see examples/multi-instance).

  const getProduct = (id: number) =>
    // Cache-aside: a miss in both layers runs the loader once, however many requests miss at once.
    // A product that does not exist is answered with undefined, which is not cached.
    cache.getOrSet<Product | undefined>(productKey(id), async (ctx) => {
      const product = await db.find(id)
      if (product !== undefined) ctx.setTags([categoryTag(product.category)])
      return product
    })

  const listCategory = (category: string) =>
    cache.getOrSet(listKey(category), () => db.listByCategory(category), { tags: [categoryTag(category)] })

  async function updateProduct(id: number, change: ProductChange) {
    // 1. The database first, and all the way to COMMIT: update() resolves only once PostgreSQL has
    //    committed the change.
    const result = await db.update(id, change)
    if (result === undefined) throw new HttpError(404, `no product ${id}`)
    const { before, after } = result
    // 2. Then the cache, and only then. Invalidating before the commit (or inside the transaction) leaves
    //    a window in which a request misses, reads the old row (still the committed one) and caches it,
    //    with nothing left to invalidate it: stale until its TTL. After the commit, a read that misses
    //    finds the new row, and a load that began before the commit and read the old row cannot write it
    //    back: the invalidation fences loads in flight (no resurrection), on every instance.
    //    The product's key, and the tag of its category; when the category changed, of both the one it
    //    left (that list must drop it) and the one it joined (that list must show it). The tag also
    //    takes the category's other product entries along; they reload on their next read.
    const categories = [...new Set([before.category, after.category])]
    const invalidated = await invalidateAfterCommit({
      keys: [productKey(id)],
      tags: categories.map(categoryTag),
    })
    return {
      product: after,
      ...(before.category === after.category
        ? {}
        : { categoryChanged: { from: before.category, to: after.category } }),
      invalidated: { keys: [productKey(id)], tags: categories.map(categoryTag), entries: invalidated },
    }
  }

  async function deleteProduct(id: number) {
    // Same order as an update: the DELETE is committed, then its cached copies go.
    const deleted = await db.delete(id)
    if (deleted === undefined) throw new HttpError(404, `no product ${id}`)
    await invalidateAfterCommit({ keys: [productKey(id)], tags: [categoryTag(deleted.category)] })
    return { deleted }
  }

  async function invalidateAfterCommit(plan: { keys: string[]; tags: string[] }): Promise<number> {
    try {
      return await cache.invalidate(plan)
    } catch (error) {
      // Redis refused the invalidation: the write IS committed (do not redo it), but cached copies may
      // be stale until their TTL. Say so; retrying the invalidation alone is the fix.
      throw new HttpError(
        500,
        `committed, but the cache could not be invalidated (${(error as Error).message}); retry the invalidation`,
      )
    }
  }

  async function route(request: IncomingMessage): Promise<[number, unknown]> {
    const { pathname } = new URL(request.url ?? '/', 'http://service')
    const method = request.method ?? 'GET'
    if (pathname === '/stats' && method === 'GET') {
      const stats: ServiceStats = {
        cache: cache.getStats(),
        db: { reads: db.reads, writes: db.writes },
      }
      return [200, stats]
    }
    const list = /^\/categories\/([^/]+)\/products$/.exec(pathname)
    if (list !== null && method === 'GET') {
      const category = decodePart(list[1]!)
      if (!CATEGORY.test(category)) throw new HttpError(400, 'a category is 1-40 of a-z, 0-9 and -')
      return [200, { category, products: await listCategory(category) }]
    }
    const item = /^\/products\/([^/]+)$/.exec(pathname)
    if (item !== null) {
      const id = Number(item[1])
      if (!Number.isSafeInteger(id) || id < 1) throw new HttpError(400, 'a product id is a positive integer')
      if (method === 'GET') {
        const product = await getProduct(id)
        return product === undefined ? [404, { error: `no product ${id}` }] : [200, product]
      }
      if (method === 'PUT')
        return [200, await updateProduct(id, parseChange(await readJson(request, MAX_BODY)))]
      if (method === 'DELETE') return [200, await deleteProduct(id)]
      throw new HttpError(405, `${method} is not allowed here`)
    }
    throw new HttpError(404, 'try GET /products/1, /categories/kitchen/products or /stats')
  }

  const server = jsonServer(route)
  const url = await listen(server, options.port)
  return {
    url,
    cache,
    cachePrefix: normalizePrefix(options.cachePrefix),
    db,
    server,
    // The server first (no request uses the cache after it), then the cache: its warmers, background
    // refreshes and bus. The Redis client is left to its owner.
    close: async () => {
      await closeServer(server)
      await cache.close()
    },
  }
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new HttpError(400, `not a valid path segment: ${part}`)
  }
}

/** The PUT body, checked before anything is written: {"priceCents"?, "name"?, "category"?}. */
function parseChange(body: unknown): ProductChange {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'expected a JSON object')
  const { priceCents, name, category, ...rest } = body as Record<string, unknown>
  if (Object.keys(rest).length > 0) throw new HttpError(400, `unknown fields: ${Object.keys(rest)}`)
  if (priceCents !== undefined && !(Number.isSafeInteger(priceCents) && (priceCents as number) >= 0))
    throw new HttpError(400, 'priceCents is a non-negative integer')
  if (name !== undefined && !(typeof name === 'string' && name.length > 0 && name.length <= 200))
    throw new HttpError(400, 'name is a string of 1-200 characters')
  if (category !== undefined && !(typeof category === 'string' && CATEGORY.test(category)))
    throw new HttpError(400, 'a category is 1-40 of a-z, 0-9 and -')
  if (priceCents === undefined && name === undefined && category === undefined)
    throw new HttpError(400, 'nothing to change')
  return {
    ...(priceCents === undefined ? {} : { priceCents: priceCents as number }),
    ...(name === undefined ? {} : { name: name as string }),
    ...(category === undefined ? {} : { category: category as string }),
  }
}
