import { CacheStack, MemoryLayer } from 'layercache'
import { FlakyPriceDb } from './flaky-db'

export interface FreshnessDemoSummary {
  readonly staleServedWhileRevalidating: number
  readonly priceAfterRevalidation: number
  readonly callsDuringOutage: number
  readonly answeredDuringOutage: number
  readonly answeredWithinSoftTimeout: boolean
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Walks through stale-while-revalidate, stale-if-error and a soft timeout with real timers (about 1 s). */
export async function runFreshnessDemo(
  log: (line: string) => void = console.log,
): Promise<FreshnessDemoSummary> {
  const db = new FlakyPriceDb()
  const cache = new CacheStack([new MemoryLayer()], {
    ttl: 100,
    staleWhileRevalidate: 200,
    staleIfError: 5_000,
    errorRetryAfter: 100,
    softTimeout: 30,
  })
  cache.on('refresh', ({ key, reason }) => log(`  background refresh of ${key} started (${reason})`))
  const price = () => cache.getOrSet('price:espresso', () => db.fetchPrice())

  log('1. Stale-while-revalidate: after the TTL, readers get the old price at once; one refresh runs.')
  await price()
  db.setPrice(120)
  await sleep(120)
  const during = await Promise.all(Array.from({ length: 50 }, price))
  const staleServedWhileRevalidating = during.filter((p) => p === 100).length
  await sleep(20)
  const priceAfterRevalidation = await price()
  log(
    `  50 readers got ${during[0]} at once; after the refresh: ${priceAfterRevalidation} (db calls: ${db.calls})`,
  )

  log('2. Stale-if-error: the database fails; readers keep the last price, the database is called rarely.')
  db.failing = true
  await sleep(320) // past the revalidate window: now a load is needed, and it fails
  const before = db.calls
  let answered = 0
  const until = Date.now() + 300
  while (Date.now() < until) {
    if ((await price()) === 120) answered++
    await sleep(5)
  }
  const callsDuringOutage = db.calls - before
  log(
    `  ${answered} requests answered with 120 while the database was down; it was called ${callsDuringOutage} times`,
  )

  log('3. Soft timeout: the database is back but slow; readers get the stale price after 30 ms.')
  db.failing = false
  db.latencyMs = 150
  db.setPrice(130)
  await sleep(120) // let the error throttle lapse so the next read calls the database again
  const started = Date.now()
  const slow = await price()
  const answeredWithinSoftTimeout = Date.now() - started < 150
  log(`  answered ${slow} after ${Date.now() - started} ms; the slow load finishes in the background`)
  await sleep(200)
  log(`  next read: ${await price()}`)
  const stats = cache.getStats()
  log(
    `Stats: stale served ${stats.staleServed} (on error ${stats.staleOnError}, on timeout ${stats.staleOnTimeout}), ` +
      `background refreshes ${stats.backgroundRefreshes}, loader calls ${stats.loaderCalls}`,
  )
  return {
    staleServedWhileRevalidating,
    priceAfterRevalidation,
    callsDuringOutage,
    answeredDuringOutage: answered,
    answeredWithinSoftTimeout,
  }
}
