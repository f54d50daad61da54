/**
 * Wall-clock milliseconds, read at most once per millisecond (as lru-cache does for its TTLs). A memory hit
 * that has to judge freshness would otherwise spend a quarter of its time in Date.now(). The reading can
 * lag by as long as the event loop is blocked, never more; decisions taken on it (stale or fresh, refresh
 * early or not) shift by that much at most.
 */
let cached = 0
let valid = false
// Fake timers swap the global Date: a swap invalidates the reading, so a test switching clocks never sees
// a value from the other one.
let cachedFrom: DateConstructor | undefined

function expire(): void {
  valid = false
}

export function coarseNow(): number {
  if (valid && globalThis.Date === cachedFrom) return cached
  cached = Date.now()
  cachedFrom = globalThis.Date
  valid = true
  const timer = setTimeout(expire, 1) as { unref?: () => void }
  timer.unref?.()
  return cached
}
