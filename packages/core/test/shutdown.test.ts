import {
  type BusListener,
  type BusOperation,
  CacheClosedError,
  CacheStack,
  type InvalidationBus,
  InvalidOptionError,
  type SingleFlightCoordinator,
} from '@layercache/core'
import { describe, expect, it, onTestFinished } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer, useFakeClock } from './support/remote-layer'

/** A bus that records what happens to it (in-process: the Redis bus has its own tests). */
function recordingBus() {
  const listeners = new Set<BusListener>()
  let closes = 0
  const bus: InvalidationBus = {
    publish: async (_operations: readonly BusOperation[]) => {},
    subscribe: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    close: async () => {
      closes++
    },
  }
  return { bus, listeners, closes: () => closes }
}

function recordingCoordinator() {
  let closes = 0
  const coordinator: SingleFlightCoordinator = {
    tryAcquire: async () => undefined,
    wait: async () => ({ kind: 'retry' }),
    close: () => {
      closes++
    },
  }
  return { coordinator, closes: () => closes }
}

describe('CacheStack.close and Symbol.asyncDispose', () => {
  it('closes the bus and the coordinator once, however often it is called', async () => {
    const { bus, listeners, closes: busCloses } = recordingBus()
    const { coordinator, closes: coordinatorCloses } = recordingCoordinator()
    const cache = new CacheStack([new MemoryLayer(), new RemoteLayer()], {
      invalidationBus: bus,
      singleFlightCoordinator: coordinator,
    })
    expect(listeners.size).toBe(1)
    const first = cache.close()
    const again = cache.namespace('t').close()
    expect(again).toBe(first)
    await first
    await cache.close()
    expect(listeners.size).toBe(0)
    expect(busCloses()).toBe(1)
    expect(coordinatorCloses()).toBe(1)
  })

  it('await using closes the stack when the scope ends', async () => {
    const { bus, closes } = recordingBus()
    let escaped: CacheStack
    {
      await using cache = new CacheStack([new MemoryLayer()], { invalidationBus: bus })
      escaped = cache
      await cache.set('k', 1)
      expect(closes()).toBe(0)
    }
    expect(closes()).toBe(1)
    await expect(escaped.get('k')).rejects.toBeInstanceOf(CacheClosedError)
  })

  it('refuses every call once closed, memory hits included, and changes nothing', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote])
    await cache.set('k', 'v', { tags: ['t'] })
    const view = cache.namespace('n')
    await cache.close()
    const calls: (() => unknown)[] = [
      () => cache.get('k'),
      () => cache.getOrSet('k', () => 'new'),
      () => cache.set('k', 'new'),
      () => cache.mset([{ key: 'k', value: 'new' }]),
      () => cache.mget(['k']),
      () => cache.has('k'),
      () => cache.delete('k'),
      () => cache.mdelete(['k']),
      () => cache.invalidateByTag('t'),
      () => cache.invalidateByPrefix(''),
      () => cache.invalidateByPattern('*'),
      () => cache.invalidate({ keys: ['k'] }),
      () => cache.refresh('k', () => 'new'),
      () => cache.warm([{ key: 'k', loader: () => 'new' }]),
      () => cache.wrap('w', () => 'new')(),
      () => view.get('k'),
      () => cache.keyVersion('k'),
    ]
    for (const call of calls)
      await expect(Promise.resolve().then(call)).rejects.toBeInstanceOf(CacheClosedError)
    expect(() => cache.addWarmer('k', () => 'new')).toThrow(CacheClosedError)
    // Redis (here its stand-in) still holds what was there: closing is not clearing.
    expect((await remote.get('k'))?.value).toBe('v')
  })

  it('lets a background refresh finish and write back before it resolves', async () => {
    const clock = useFakeClock()
    onTestFinished(() => clock.restore())
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote], { staleWhileRevalidate: 60_000 })
    await cache.getOrSet('k', () => 'old', { ttl: 1000 })
    clock.advance(1001)
    const loading = deferred<string>()
    let signal: AbortSignal | undefined
    const refreshed = new Promise<void>((resolve) => cache.on('refresh', () => resolve()))
    expect(
      await cache.getOrSet(
        'k',
        (ctx) => {
          signal = ctx.signal
          return loading.promise
        },
        { ttl: 60_000 },
      ),
    ).toBe('old')
    await refreshed
    const closed = cache.close()
    loading.resolve('new')
    await closed
    expect(signal?.aborted).toBe(false)
    expect((await remote.get('k'))?.value).toBe('new')
  })

  it('abandons what is still running after abandonAfter: signal aborted, write-back dropped', async () => {
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer(), remote])
    const loading = deferred<string>()
    let signal: AbortSignal | undefined
    const started = deferred()
    const waiting = cache.getOrSet('k', (ctx) => {
      signal = ctx.signal
      started.resolve()
      return loading.promise
    })
    await started.promise
    await cache.close({ abandonAfter: 0 })
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBeInstanceOf(CacheClosedError)
    // A loader that ignores its signal still answers its caller, but nothing reaches a layer.
    loading.resolve('late')
    expect(await waiting).toBe('late')
    expect(await remote.get('k')).toBeUndefined()
    expect(cache.layers[0]!.get('k')).toBeUndefined()
  })

  it('starts no warmer refill once closing', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RemoteLayer()])
    let refills = 0
    cache.addWarmer('home', () => {
      refills++
      return 'page'
    })
    await cache.delete('home') // schedules a refill on a later turn
    await cache.close()
    await new Promise((resolve) => setImmediate(resolve))
    expect(refills).toBe(0)
  })

  it('refuses bad options having closed nothing', async () => {
    const { bus, closes } = recordingBus()
    const cache = new CacheStack([new MemoryLayer()], { invalidationBus: bus })
    await expect(cache.close({ abandonAfter: -1 })).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.close({ wait: 1 } as never)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(closes()).toBe(0)
    await cache.set('k', 1)
    expect(await cache.get('k')).toBe(1)
  })

  it('reports a part that fails to close and closes the others', async () => {
    const { coordinator, closes } = recordingCoordinator()
    const failing: InvalidationBus = {
      publish: async () => {},
      subscribe: () => () => {},
      close: async () => {
        throw new Error('bus broken')
      },
    }
    const cache = new CacheStack([new MemoryLayer()], {
      invalidationBus: failing,
      singleFlightCoordinator: coordinator,
    })
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event))
    await cache.close()
    expect(closes()).toBe(1)
    expect(errors).toEqual([
      expect.objectContaining({ operation: 'close', layer: 'invalidationBus', handled: true }),
    ])
  })
})
