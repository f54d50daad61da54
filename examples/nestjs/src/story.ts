import { eventually } from '@layercache/test-utils'
import { type CatalogApp, startCatalogApp } from './app'
import { CatalogDb, type Product } from './catalog-db'

export interface StorySummary {
  /** Database queries after: A's first read, A's second, B's first. */
  readonly queriesAfterReads: readonly [number, number, number]
  /** Where B found product 1 the first time ('redis': A had loaded it). */
  readonly bReadFrom: 'memory' | 'redis' | 'database'
  readonly stampedeRequests: number
  readonly stampedeQueries: number
  readonly stampedeAllAnswered: boolean
  /** B's answers after A changed product 1's price: the product, and its category list. */
  readonly priceOnBAfterChange: number
  readonly listPriceOnBAfterChange: number
  readonly newPrice: number
  /** The session A opened, read on B; and A's answer after B closed it. */
  readonly sessionOnB: unknown
  readonly sessionStatusOnAAfterLogout: number
  readonly missingProductStatus: number
  readonly missingProductQueries: number
}

async function call(app: CatalogApp, method: string, path: string, body?: unknown) {
  const response = await fetch(`${app.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) }
}

/**
 * Two instances of the NestJS catalog service (A and B) over one Redis and one database: cached reads,
 * a cold product under 1000 concurrent requests, a price change on A that B's memory drops at once,
 * sessions through CACHE_MANAGER on the same stack, and a shutdown that closes everything.
 */
export async function runNestStory(
  redisUrl: string,
  prefix: string,
  log: (line: string) => void = console.log,
): Promise<StorySummary> {
  const db = new CatalogDb()
  const apps: CatalogApp[] = []
  try {
    const a = await startCatalogApp({ name: 'A', redisUrl, prefix, db })
    apps.push(a)
    const b = await startCatalogApp({ name: 'B', redisUrl, prefix, db })
    apps.push(b)
    log(`Two instances of the catalog service: A at ${a.url}, B at ${b.url}, one Redis, one database.`)
    await acquaint(apps)

    // 1. Cached reads.
    await call(a, 'GET', '/products/1')
    const afterA1 = db.queries
    await call(a, 'GET', '/products/1')
    const afterA2 = db.queries
    const redisHitsBefore = b.stack.getStats().layers[1]!.hits
    const onB = (await call(b, 'GET', '/products/1')).body as Product
    const afterB = db.queries
    const bReadFrom =
      afterB > afterA2
        ? 'database'
        : b.stack.getStats().layers[1]!.hits > redisHitsBefore
          ? 'redis'
          : 'memory'
    log(
      `GET /products/1 on A: ${afterA1} query; again on A: from memory (${afterA2} query in all); on B: ` +
        `${onB.name}, $${onB.price}, from ${bReadFrom} (${afterB} query in all).`,
    )

    // 2. A cold product, 1000 concurrent requests over both instances.
    const before = db.queries
    const requests = Array.from({ length: 1000 }, (_, i) => call(i % 2 === 0 ? a : b, 'GET', '/products/2'))
    const answers = await Promise.all(requests)
    const stampedeQueries = db.queries - before
    const stampedeAllAnswered = answers.every(
      (answer) => answer.status === 200 && (answer.body as Product).name === 'Rocket skates',
    )
    log(`1000 concurrent GET /products/2, half on A, half on B: ${stampedeQueries} database query.`)

    // 3. A price change on A: B's memory drops the product and the category list at once.
    await call(b, 'GET', '/categories/tools') // B caches the list too
    const newPrice = 199
    await call(a, 'PUT', '/products/1/price', { price: newPrice })
    await eventually(
      () => !b.inMemory('product:1') && !b.inMemory('category:tools'),
      "B's memory drops product 1 and the tools list",
    )
    const priceOnB = ((await call(b, 'GET', '/products/1')).body as Product).price
    const list = (await call(b, 'GET', '/categories/tools')).body as Product[]
    const listPrice = list.find((product) => product.id === 1)!.price
    log(
      `PUT /products/1/price on A ($${newPrice}): B answers $${priceOnB} for the product and $${listPrice} ` +
        'in the tools list (its memory dropped both on the bus message).',
    )

    // 4. Sessions through @nestjs/cache-manager's CACHE_MANAGER, on the same stack.
    const { id } = (await call(a, 'POST', '/sessions', { user: 'ada' })).body as { id: string }
    const sessionOnB = (await call(b, 'GET', `/sessions/${id}`)).body
    await call(a, 'GET', `/sessions/${id}`) // now in A's memory
    await call(b, 'DELETE', `/sessions/${id}`)
    await eventually(() => !a.inMemory(`sessions:session:${id}`), "A's memory drops the session")
    const sessionStatusOnA = (await call(a, 'GET', `/sessions/${id}`)).status
    log(
      `Session ${id} opened on A (CACHE_MANAGER.set), read on B: ${JSON.stringify(sessionOnB)}; closed on B: ` +
        `A answers ${sessionStatusOnA}.`,
    )

    // 5. A product that does not exist: the `null` is cached, the second request costs no query.
    const missingBefore = db.queries
    const missing = await call(a, 'GET', '/products/99')
    await call(a, 'GET', '/products/99')
    log(`GET /products/99 twice: ${missing.status}, ${db.queries - missingBefore} query.`)

    return {
      queriesAfterReads: [afterA1, afterA2, afterB],
      bReadFrom,
      stampedeRequests: requests.length,
      stampedeQueries,
      stampedeAllAnswered,
      priceOnBAfterChange: priceOnB,
      listPriceOnBAfterChange: listPrice,
      newPrice,
      sessionOnB,
      sessionStatusOnAAfterLogout: sessionStatusOnA,
      missingProductStatus: missing.status,
      missingProductQueries: db.queries - missingBefore,
    }
  } finally {
    // LayercacheModule stops each stack, then its onClose closes the bus, the coordinator and Redis.
    for (const app of apps) await app.close()
    log('Both instances closed: the stacks stopped listening, then the bus, coordinator and connections.')
  }
}

/**
 * Returns once each instance has applied an invalidation of the other's. An instance flushes its memory
 * once when it first hears another (it cannot know what that one sent before), so the story lets that
 * happen before it looks at memory: both delete a key nobody uses until each heard the other's delete.
 */
async function acquaint(apps: readonly CatalogApp[]): Promise<void> {
  const heard = new Set<string>()
  const stops = apps.map((app) => app.stack.on('peerInvalidation', () => heard.add(app.name)))
  try {
    await eventually(async () => {
      if (heard.size < apps.length) await Promise.all(apps.map((app) => app.stack.delete('warm-up')))
      return heard.size === apps.length
    }, 'the instances hear each other')
  } finally {
    for (const stop of stops) stop()
  }
}
