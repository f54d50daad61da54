import { describe, expect, it } from 'vitest'
import { type LeaseOwner, RedisLease } from '../src/redis-lease'

/** A coordinator stand-in: Redis answers every release with `held` (the key still holds our value). */
function owner(held: boolean) {
  const calls = { lost: 0, released: 0 }
  const fake: LeaseOwner & { calls: typeof calls } = {
    leaseMs: 60_000,
    calls,
    renew: async () => true,
    release: async () => {
      calls.released++
      return held
    },
    lost: () => {
      calls.lost++
    },
    forget: () => {},
  }
  return fake
}

describe('RedisLease.release', () => {
  it('answers whether the lease was held, and frees it in Redis either way', async () => {
    const trusted = owner(true)
    expect(await new RedisLease(trusted, 1, 'h', 'v', performance.now()).release()).toBe(true)
    const taken = owner(false)
    expect(await new RedisLease(taken, 1, 'h', 'v', performance.now()).release()).toBe(false)
    expect([trusted.calls, taken.calls]).toEqual([
      { lost: 0, released: 1 },
      { lost: 1, released: 1 },
    ])
  })

  it('a lease the holder stopped trusting (no renewal for a lease period) is not held at release, even if Redis kept it', async () => {
    // Acquired a lease period ago with no renewal since: Redis was paused, say, and has just come back with
    // the key not yet expired. The load went on as if the lease were lost (no write-back): it must be
    // counted as a lost lease, not as a clean release (single-flight-faults flaked on this under load).
    const stale = owner(true)
    const lease = new RedisLease(stale, 1, 'h', 'v', performance.now() - stale.leaseMs - 1)
    expect(lease.held).toBe(false)
    expect(await lease.release()).toBe(false)
    expect(stale.calls.released).toBe(1) // still freed in Redis, waking the waiters
  })
})
