import { CacheStack, MemoryLayer } from 'layercache'
import { FlakyPriceDb } from './flaky-db'

export interface FreshnessDemoSummary {
  readonly staleServedWhileRevalidating: number
  readonly priceAfterRevalidation: number
  readonly callsDuringOutage: number
  readonly answeredDuringOutage: number
  /** How long the outage's requests ran (at least 300 ms): at most one database call per 100 ms of it. */
  readonly outageMs: number
  readonly answeredWithinSoftTimeout: boolean
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Reads until the cache serves `expected`: a load running in the background has landed (the stack tells
 * no one when its write-back is done, so this polls what readers get). Fails after `timeoutMs`.
 */
async function servedOnceLanded(read: () => Promise<number>, expected: number, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const served = await read()
    if (served === expected) return served
    if (Date.now() > deadline) throw new Error(`the cache still serves ${served}, not ${expected}`)
    await sleep(5)
  }
}

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
  await sleep(120) // time must pass: past the 100 ms TTL, well inside the 200 ms revalidate window
  const during = await Promise.all(Array.from({ length: 50 }, price))
  const staleServedWhileRevalidating = during.filter((p) => p === 100).length
  const priceAfterRevalidation = await servedOnceLanded(price, 120)
  log(
    `  50 readers got ${during[0]} at once; after the refresh: ${priceAfterRevalidation} (db calls: ${db.calls})`,
  )

  log('2. Stale-if-error: the database fails; readers keep the last price, the database is called rarely.')
  db.failing = true
  await sleep(320) // past the revalidate window: now a load is needed, and it fails
  const before = db.calls
  let requests = 0
  let answered = 0
  // Requests for 300 ms, and at least 20 of them (a busy machine that manages fewer in 300 ms goes on).
  const outageStarted = Date.now()
  while (Date.now() - outageStarted < 300 || requests < 20) {
    requests++
    if ((await price()) === 120) answered++
    await sleep(5)
  }
  const outageMs = Date.now() - outageStarted
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
  // The stale price: the reader did not wait for the 150 ms load (its 30 ms soft timeout fires first).
  const answeredWithinSoftTimeout = slow === 120
  log(`  answered ${slow} after ${Date.now() - started} ms; the slow load finishes in the background`)
  log(`  once it landed, reads get ${await servedOnceLanded(price, 130)}`)
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
    outageMs,
    answeredWithinSoftTimeout,
  }
}
