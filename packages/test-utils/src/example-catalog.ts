/**
 * The product catalogue the HTTP response-caching examples (express-catalog, fastify-catalog, hono-catalog)
 * share: its "database" and the client story each one tells against its own framework.
 */
import type { Redis } from 'ioredis'
import { connectRedis } from './example-redis'

export interface Product {
  readonly id: string
  readonly name: string
  readonly price: number
}

export class Catalog {
  reads = 0
  readonly #products = new Map<string, Product>([
    ['1', { id: '1', name: 'Kettle', price: 39 }],
    ['2', { id: '2', name: 'Teapot', price: 25 }],
    ['3', { id: '3', name: 'Mug', price: 9 }],
  ])

  /** A read that takes `delayMs`, like a query to a busy database. */
  async find(id: string, delayMs = 20): Promise<Product | undefined> {
    this.reads++
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    return this.#products.get(id)
  }

  async list(): Promise<Product[]> {
    this.reads++
    return [...this.#products.values()]
  }

  update(id: string, price: number): Product | undefined {
    const product = this.#products.get(id)
    if (product === undefined) return undefined
    const updated = { ...product, price }
    this.#products.set(id, updated)
    return updated
  }
}

/** What a client saw, for the console and the test. */
export interface StorySummary {
  readonly first: string | null
  readonly second: string | null
  readonly notModified: number
  readonly concurrent: number
  readonly readsForConcurrent: number
  readonly priceAfterWrite: number
  readonly afterWrite: string | null
}

/** Plays a client against the catalogue at `base`: a miss, a hit, a 304, a cold stampede, a write. */
export async function runStory(
  base: string,
  catalog: Catalog,
  log: (line: string) => void,
): Promise<StorySummary> {
  const first = await fetch(`${base}/products/1`)
  log(
    `GET /products/1        ${first.status} x-cache: ${first.headers.get('x-cache')}  ${await first.text()}`,
  )
  const second = await fetch(`${base}/products/1`)
  log(`GET /products/1        ${second.status} x-cache: ${second.headers.get('x-cache')}  (no database read)`)
  await second.arrayBuffer()
  const etag = second.headers.get('etag') ?? ''
  const conditional = await fetch(`${base}/products/1`, { headers: { 'if-none-match': etag } })
  log(`GET with If-None-Match ${conditional.status} (the client's copy is current)`)
  await conditional.arrayBuffer()

  const concurrent = 200
  const before = catalog.reads
  const answers = await Promise.all(
    Array.from({ length: concurrent }, async () => (await fetch(`${base}/products/2`)).text()),
  )
  const readsForConcurrent = catalog.reads - before
  log(
    `${concurrent} concurrent cold GET /products/2: ${readsForConcurrent} database read, ${new Set(answers).size} distinct body`,
  )

  const write = await fetch(`${base}/products/1`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ price: 45 }),
  })
  log(`PUT /products/1        ${write.status} price 45, purges product:1 and products`)
  await write.arrayBuffer()
  const after = await fetch(`${base}/products/1`)
  const product = (await after.json()) as { price: number }
  log(
    `GET /products/1        ${after.status} x-cache: ${after.headers.get('x-cache')}  price ${product.price}`,
  )
  return {
    first: first.headers.get('x-cache'),
    second: second.headers.get('x-cache'),
    notModified: conditional.status,
    concurrent,
    readsForConcurrent,
    priceAfterWrite: product.price,
    afterWrite: after.headers.get('x-cache'),
  }
}

/** A framework app the catalogue example started: where it listens and how to stop it. */
export interface CatalogApp {
  readonly base: string
  close(): Promise<void>
}

/**
 * The whole of a catalogue example's main but the framework: connects Redis (REDIS_URL or a throwaway
 * server), builds the cache with `makeCache` under a prefix removed on exit, starts the app, tells the
 * story and stops, or with `--serve` keeps serving until Ctrl-C.
 */
export async function runCatalogExample<C extends { close(): unknown }>(options: {
  readonly framework: string
  readonly makeCache: (client: Redis, prefix: string) => C
  readonly start: (cache: C, catalog: Catalog, port: number) => Promise<CatalogApp>
}): Promise<void> {
  const redis = await connectRedis()
  if (redis.client === undefined) {
    console.error(`This example needs Redis for its second layer: ${redis.description}. Set REDIS_URL.`)
    process.exit(1)
  }
  console.log(`Using ${redis.description}.`)
  const prefix = `example-${options.framework.toLowerCase()}-${process.pid}:`
  redis.removeOnClose(prefix)
  const cache = options.makeCache(redis.client, prefix)
  const catalog = new Catalog()
  const app = await options.start(cache, catalog, Number(process.env.PORT ?? 0))
  const base = app.base
  console.log(`${options.framework} listens on ${base}\n`)
  await runStory(base, catalog, (line) => console.log(line))
  const stop = async () => {
    await app.close()
    await cache.close()
    await redis.close()
  }
  if (process.argv.includes('--serve')) {
    console.log(
      `\nTry: curl -i ${base}/products/3   (twice), then curl -X PUT -H 'content-type: application/json' -d '{"price":12}' ${base}/products/3`,
    )
    process.once('SIGINT', () => void stop())
  } else await stop()
}
