import { describe, expect, it } from 'vitest'
import { runFreshnessDemo } from '../src/freshness-demo'

describe('examples/freshness', () => {
  it('serves stale while revalidating, rides out a database outage with bounded load, and answers slow loads early', async () => {
    const summary = await runFreshnessDemo(() => {})
    expect(summary.staleServedWhileRevalidating).toBe(50)
    expect(summary.priceAfterRevalidation).toBe(120)
    expect(summary.answeredDuringOutage).toBeGreaterThan(10)
    // errorRetryAfter 100 ms over ~300 ms of requests: a handful of calls, not one per request.
    expect(summary.callsDuringOutage).toBeLessThanOrEqual(Math.floor(summary.outageMs / 100) + 1)
    expect(summary.answeredWithinSoftTimeout).toBe(true)
  })
})
