/**
 * The stack's side of fleet-wide single-flight, against in-process coordinators that implement the
 * SingleFlightCoordinator contract in scripted ways (the Redis one is tested in @layercache/distributed).
 */
import {
  CacheStack,
  InvalidOptionError,
  LayerUnavailableError,
  type SingleFlightCoordinator,
  type SingleFlightLease,
  type SingleFlightWait,
} from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { MemoryLayer, RemoteLayer } from './support/remote-layer'

/** A coordinator whose lease is always held by someone else and whose waits answer `outcome`. */
function alwaysBusy(outcome: SingleFlightWait) {
  const calls = { tryAcquire: 0, wait: 0 }
  const coordinator: SingleFlightCoordinator = {
    tryAcquire: async () => {
      calls.tryAcquire++
      return undefined
    },
    wait: async () => {
      calls.wait++
      return outcome
    },
  }
  return { coordinator, calls }
}

/** A coordinator that grants every lease; `held` and the release's answer are the test's to set. */
function granting(release: () => Promise<boolean> = async () => true) {
  const released: unknown[] = []
  let token = 0
  const coordinator: SingleFlightCoordinator = {
    tryAcquire: async () => {
      const lease: SingleFlightLease = {
        token: ++token,
        held: true,
        release: (result) => {
          released.push(result)
          return release()
        },
      }
      return lease
    },
    wait: async () => ({ kind: 'retry' }),
  }
  return { coordinator, released }
}

function stack(coordinator: SingleFlightCoordinator) {
  const remote = new RemoteLayer()
  const memory = new MemoryLayer()
  return { remote, memory, cache: new CacheStack([memory, remote], { singleFlightCoordinator: coordinator }) }
}

describe('fleet-wide single-flight in the stack', () => {
  it('never waits without bound: after 8 rounds without an answer it loads without a lease', async () => {
    const { coordinator, calls } = alwaysBusy({ kind: 'retry' })
    const { cache } = stack(coordinator)
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded')
    expect(calls.wait).toBe(8)
    expect(cache.getStats()).toMatchObject({ coordinatedWaits: 8, uncoordinatedLoads: 1, loaderCalls: 1 })
  })

  it('a wait that timed out (the holder is still loading) makes it load after one more try', async () => {
    const { coordinator, calls } = alwaysBusy({ kind: 'retry', timedOut: true })
    const { cache } = stack(coordinator)
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded')
    expect(calls).toEqual({ tryAcquire: 2, wait: 1 })
    expect(cache.getStats()).toMatchObject({ coordinatedWaits: 1, uncoordinatedLoads: 1 })
  })

  it('a coordinator that fails is bypassed: the loader runs and the failure is counted and emitted', async () => {
    const failing: SingleFlightCoordinator = {
      tryAcquire: () => Promise.reject(new LayerUnavailableError('coordinator', 'down')),
      wait: () => Promise.reject(new Error('unused')),
    }
    const { cache } = stack(failing)
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event))
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded')
    expect(cache.getStats()).toMatchObject({ coordinatorErrors: 1, uncoordinatedLoads: 1, loaderCalls: 1 })
    expect(errors).toMatchObject([
      { operation: 'tryAcquire', layer: 'singleFlightCoordinator', handled: true },
    ])
  })

  it('a released result is the answer when the shared layers have nothing', async () => {
    const { coordinator } = alwaysBusy({ kind: 'released', result: { value: { from: 'peer' } } })
    const { cache } = stack(coordinator)
    let calls = 0
    expect(await cache.getOrSet('k', () => ++calls)).toEqual({ from: 'peer' })
    expect(calls).toBe(0)
    expect(cache.getStats()).toMatchObject({ coordinatedWaits: 1, coordinatedAnswers: 1 })
  })

  it('hands an uncacheable value over on release, and a cached one not', async () => {
    const { coordinator, released } = granting()
    const { cache } = stack(coordinator)
    await cache.getOrSet('a', () => undefined)
    await cache.getOrSet('b', () => 'x', { shouldCache: () => false })
    await cache.getOrSet('c', () => 'cached')
    expect(released).toEqual([{ value: undefined }, { value: 'x' }, undefined])
  })

  it('a release that says the lease was lost removes the written value from every layer', async () => {
    const { coordinator } = granting(async () => false)
    const { cache, memory, remote } = stack(coordinator)
    expect(await cache.getOrSet('k', () => 'old')).toBe('old')
    expect(memory.get('k')).toBeUndefined()
    expect(await remote.get('k')).toBeUndefined()
    expect(cache.getStats().leasesLost).toBe(1)
  })

  it('refresh() recomputes without asking the coordinator', async () => {
    const { coordinator, calls } = alwaysBusy({ kind: 'retry' })
    const { cache } = stack(coordinator)
    expect(await cache.refresh('k', (ctx) => ctx.fencingToken ?? 'no token')).toBe('no token')
    expect(calls).toEqual({ tryAcquire: 0, wait: 0 })
  })

  it('refuses a singleFlightCoordinator that does not implement the contract', () => {
    for (const bad of [{}, { tryAcquire: () => undefined }, null, 'redis']) {
      expect(() => new CacheStack([new MemoryLayer()], { singleFlightCoordinator: bad as never })).toThrow(
        InvalidOptionError,
      )
    }
  })
})
