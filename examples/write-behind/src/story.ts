import type { Redis } from 'ioredis'
import type pg from 'pg'
import { OrderService, ServiceStoppingError } from './order-service'
import { OrdersDb } from './orders-db'

/** Two instances of the order service sharing Redis and PostgreSQL. */
export interface Shop {
  readonly db: OrdersDb
  /** Takes the orders. */
  readonly checkout: OrderService
  /** Shows order pages (Redis only, no memory layer: it must see checkout's writes at once). */
  readonly pages: OrderService
  /** Both instances' graceful shutdown: refuse writes, drain the queue into PostgreSQL, stop. */
  shutdown(timeoutMs?: number): Promise<void>
}

export interface ShopNames {
  readonly table: string
  readonly queue: string
  readonly cachePrefix: string
}

export async function openShop(client: Redis, pool: pg.Pool, names: ShopNames): Promise<Shop> {
  const db = new OrdersDb(pool, names.table)
  await db.create()
  const common = { client, db, queue: names.queue, cachePrefix: names.cachePrefix }
  const checkout = new OrderService({ ...common, name: 'checkout' })
  const pages = new OrderService({ ...common, name: 'pages', memory: false })
  let stopping: Promise<void> | undefined
  return {
    db,
    checkout,
    pages,
    shutdown: (timeoutMs) => {
      stopping ??= Promise.all([checkout.shutdown(timeoutMs), pages.shutdown(timeoutMs)]).then(() => {})
      return stopping
    },
  }
}

export interface OrderStorySummary {
  readonly placed: number
  readonly writeP50Ms: number
  readonly rowsRightAfterCheckout: number
  readonly pagesServedFromCache: number
  readonly databaseReadsForPages: number
  readonly msUntilDatabaseCaughtUp: number
  readonly statusInDatabase: string | undefined
  readonly placedDuringOutage: number
  readonly retriesDuringOutage: number
  readonly rowsAfterOutage: number
  readonly placedBeforeShutdown: number
  readonly rowsAfterShutdown: number
  readonly queueLengthAfterShutdown: number
  readonly refusedAfterShutdown: boolean
  readonly deadLetters: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitForRows(db: OrdersDb, rows: number, timeoutMs = 15_000): Promise<void> {
  const started = Date.now()
  while ((await db.count()) < rows) {
    if (Date.now() - started > timeoutMs) throw new Error(`the database did not reach ${rows} rows`)
    await sleep(5)
  }
}

/**
 * A checkout rush, order pages served at once from the cache, a status change, a database outage that
 * customers never see, and a graceful shutdown that leaves nothing behind in the queue.
 */
export async function runOrderStory(
  shop: Shop,
  client: Redis,
  log: (line: string) => void = console.log,
): Promise<OrderStorySummary> {
  const { db, checkout, pages } = shop

  // 1. 200 customers check out at once.
  const latencies: number[] = []
  const rushStarted = performance.now()
  const orders = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const started = performance.now()
      const order = await checkout.placeOrder(`customer-${i}`, 1_000 + i)
      latencies.push(performance.now() - started)
      return order
    }),
  )
  const rushEnded = performance.now()
  const rowsRightAfterCheckout = await db.count()
  latencies.sort((a, b) => a - b)
  const writeP50Ms = latencies[latencies.length >> 1]!
  log(
    `200 orders placed at once, all accepted within ${(rushEnded - rushStarted).toFixed(0)} ms (each queued ` +
      `in Redis and cached). PostgreSQL holds ${rowsRightAfterCheckout} of them so far.`,
  )

  // 2. Every order page, on the other instance, before PostgreSQL has the rows.
  const readsBefore = db.reads
  let served = 0
  for (const order of orders) if ((await pages.getOrder(order.id))?.id === order.id) served++
  const databaseReadsForPages = db.reads - readsBefore
  log(`The pages instance shows all ${served} order pages at once: ${databaseReadsForPages} database reads.`)

  await waitForRows(db, 200)
  const msUntilDatabaseCaughtUp = performance.now() - rushEnded
  log(
    `PostgreSQL held all 200 rows ${msUntilDatabaseCaughtUp.toFixed(0)} ms after the rush, written by the ` +
      `consumers of both instances in ${db.batches} batches so far.`,
  )

  // 3. A status change in quick succession: the database ends with the last one.
  const first = orders[0]!
  await checkout.setStatus(first.id, 'paid')
  await checkout.setStatus(first.id, 'shipped')
  await checkout.writes.flush()
  const statusInDatabase = (await db.find(first.id))?.status
  log(`Order ${first.id}: paid, then shipped; PostgreSQL says "${statusInDatabase}".`)

  // 4. PostgreSQL goes away for 400 ms: checkout keeps answering, the writes wait in Redis.
  let retries = 0
  let writerFailed!: () => void
  const firstRetry = new Promise<void>((resolve) => {
    writerFailed = resolve
  })
  const stopCounting = checkout.writes.on('retry', ({ entries }) => {
    retries += entries.length
    writerFailed()
  })
  const stopCountingPages = pages.writes.on('retry', ({ entries }) => {
    retries += entries.length
    writerFailed()
  })
  db.down = true
  const during = await Promise.all(
    Array.from({ length: 50 }, (_, i) => checkout.placeOrder(`late-${i}`, 500)),
  )
  // At least 400 ms, and until a consumer has met the outage (its batch failed and waits for a retry).
  await Promise.all([sleep(400), firstRetry])
  db.down = false
  await waitForRows(db, 250)
  stopCounting()
  stopCountingPages()
  const rowsAfterOutage = await db.count()
  log(
    `During a 400 ms database outage ${during.length} more orders were taken at once; the writer failed ` +
      `${retries} entry deliveries, retried with backoff, and PostgreSQL holds ${rowsAfterOutage} rows once it is back.`,
  )

  // 5. SIGTERM in the middle of a burst: the shutdown drains the queue before it resolves.
  const burst = await Promise.all(
    Array.from({ length: 100 }, (_, i) => checkout.placeOrder(`final-${i}`, 700)),
  )
  await shop.shutdown()
  const rowsAfterShutdown = await db.count()
  const queueLengthAfterShutdown = await client.xlen(checkout.writes.streamKey)
  let refusedAfterShutdown = false
  try {
    await checkout.placeOrder('too-late', 1)
  } catch (error) {
    refusedAfterShutdown = error instanceof ServiceStoppingError
  }
  log(
    `${burst.length} orders, then shutdown(): it resolved with ${rowsAfterShutdown} rows in PostgreSQL and ` +
      `${queueLengthAfterShutdown} entries left in the queue; new orders are refused.`,
  )
  const deadLetters = (await checkout.writes.deadLetters()).length
  return {
    placed: orders.length + during.length + burst.length,
    writeP50Ms,
    rowsRightAfterCheckout,
    pagesServedFromCache: served,
    databaseReadsForPages,
    msUntilDatabaseCaughtUp,
    statusInDatabase,
    placedDuringOutage: during.length,
    retriesDuringOutage: retries,
    rowsAfterOutage,
    placedBeforeShutdown: burst.length,
    rowsAfterShutdown,
    queueLengthAfterShutdown,
    refusedAfterShutdown,
    deadLetters,
  }
}
