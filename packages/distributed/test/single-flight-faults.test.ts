/**
 * Fleet-wide single-flight when Redis fails (invariant 6, degrade, never hang): killed or paused (SIGSTOP)
 * redis-servers of this file's own. Every getOrSet still answers through its loader, and the coordinator's
 * failures are counted.
 */
import { spawnTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  eventually,
  type FlightInstance,
  gate,
  leaseKeyOf,
  startFlightInstance,
} from './support/flight-instances'

let redis: TestRedis
let run = 0
let instances: FlightInstance[] = []

beforeEach(async () => {
  redis = await spawnTestRedis()
})
afterEach(async () => {
  redis.server?.resume()
  await Promise.all(instances.map((instance) => instance.close()))
  instances = []
  await redis.close()
})

function fleet(count: number, coordinator: object = {}) {
  const prefix = `${redis.keyPrefix}sff${++run}:`
  const base = redis.createClient()
  base.on('error', () => {})
  const started = Array.from({ length: count }, () =>
    startFlightInstance(base, prefix, {
      coordinator: {
        commandTimeout: 200,
        leaseMs: 60_000,
        waitTimeoutMs: 120_000,
        pollMs: 50,
        ...coordinator,
      },
      stack: { onLayerError: 'bypass' },
    }),
  )
  instances.push(...started)
  return { prefix, instances: started }
}

/** Every connection of the instances is up (so a lost one is refused at once, not queued). */
async function connected(list: readonly FlightInstance[]) {
  await Promise.all(list.map((instance) => instance.stack.getOrSet('warm-up', () => 1)))
}

describe('single-flight when Redis fails', () => {
  it('Redis down: getOrSet answers through the loader; the coordinator’s errors are counted', async () => {
    const [a] = fleet(1).instances as [FlightInstance]
    await connected([a])
    await redis.server!.kill()
    expect(await a.stack.getOrSet('k', () => 'from the database')).toBe('from the database')
    expect(a.stack.getStats()).toMatchObject({ coordinatorErrors: 1, uncoordinatedLoads: 1 })
  })

  it('Redis dies while an instance waits: the waiter loads by itself, the holder still answers', async () => {
    const [a, b] = fleet(2).instances as [FlightInstance, FlightInstance]
    await connected([a, b])
    const loaded = gate()
    const holding = a.stack.getOrSet('k', async () => {
      await loaded.opened
      return 'a'
    })
    await eventually(() => a.coordinator.stats.holding === 1, 'a holds the lease')
    const waiting = b.stack.getOrSet('k', () => 'b')
    await eventually(() => b.coordinator.stats.looks >= 1, 'b waits')
    await redis.server!.kill()
    expect(await waiting).toBe('b')
    expect(b.stack.getStats().uncoordinatedLoads).toBe(1)
    expect(b.stack.getStats().coordinatorErrors).toBeGreaterThanOrEqual(1)
    loaded.open()
    expect(await holding).toBe('a')
    expect(a.stack.getStats().coordinatorErrors).toBe(1) // its release
  })

  it('a holder cut off from Redis for a lease period stops trusting its lease and does not write', async () => {
    const [a, b] = fleet(2, { leaseMs: 300, waitTimeoutMs: 1000, commandTimeout: 100 }).instances as [
      FlightInstance,
      FlightInstance,
    ]
    await connected([a, b])
    const loaded = gate()
    const holding = a.stack.getOrSet('k', async () => {
      await loaded.opened
      return 'a'
    })
    await eventually(() => a.coordinator.stats.holding === 1, 'a holds the lease')
    redis.server!.pause()
    await eventually(() => a.coordinator.stats.lost === 1, 'no renewal got through for a lease period')
    redis.server!.resume()
    loaded.open()
    expect(await holding).toBe('a')
    expect(a.memory.get('k')).toBeUndefined()
    expect(await b.stack.get('k')).toBeUndefined()
    expect(a.stack.getStats().leasesLost).toBe(1)
  })

  it('Redis full: a release whose result Redis refuses still frees the lease; the waiter is told at once', async () => {
    const { prefix, instances: started } = fleet(2)
    const [a, b] = started as [FlightInstance, FlightInstance]
    await connected([a, b])
    const raw = redis.createClient()
    raw.on('error', () => {})
    await raw.config('SET', 'maxmemory-policy', 'noeviction')
    await raw.config('SET', 'maxmemory', '8mb')
    const lease = await a.coordinator.tryAcquire('k')
    const waiting = b.coordinator.wait('k')
    await eventually(() => b.coordinator.stats.looks >= 1, 'the waiter looked at the lease')
    // Redis is full: commands that need memory (the result's SET) are refused, deletes still run.
    await raw.setrange('filler', 16 * 1024 * 1024, 'x')
    const before = a.coordinator.stats
    expect(await lease!.release({ value: 'v' })).toBe(true)
    // The lease (60 s) is gone at once: the waiter was woken by the release, not by an expiry.
    expect(await raw.exists(leaseKeyOf(prefix, 'k'))).toBe(0)
    expect(await waiting).toEqual({ kind: 'released', result: undefined })
    expect(a.coordinator.stats).toMatchObject({
      released: before.released + 1,
      handedOver: before.handedOver,
      errors: before.errors + 1, // the refused result
    })
  })

  it('Redis paused: every call times out and the load goes on; a late acquisition is undone', async () => {
    const { prefix, instances: started } = fleet(1)
    const [a] = started as [FlightInstance]
    await connected([a])
    redis.server!.pause()
    expect(await a.stack.getOrSet('k', () => 'from the database')).toBe('from the database')
    expect(a.stack.getStats()).toMatchObject({ coordinatorErrors: 1, uncoordinatedLoads: 1 })
    redis.server!.resume()
    // The acquisition ran once Redis came back; the lease it left (60 s) was removed right after it.
    const raw = redis.createClient()
    raw.on('error', () => {})
    await eventually(async () => (await raw.exists(leaseKeyOf(prefix, 'k', 'token'))) === 1, 'it ran late')
    expect(await raw.exists(leaseKeyOf(prefix, 'k'))).toBe(0)
  })
})
