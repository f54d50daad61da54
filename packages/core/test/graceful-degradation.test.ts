/**
 * Invariant 6 at the stack level, on the in-memory remote double: with `gracefulDegradation` a failing
 * remote layer is bypassed, and its circuit breaker stops calling it after repeated failures.
 * (packages/layercache/test/degradation.test.ts runs the same against a real Redis.)
 */
import {
  type CacheEventMap,
  CacheStack,
  type CacheStackOptions,
  CircuitOpenError,
  InvalidOptionError,
  LayerUnavailableError,
  SerializationError,
} from '@layercache/core'
import type { FakeClock } from '@layercache/test-utils/fake-clock'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MemoryLayer, RemoteLayer, useFakeClock } from './support/remote-layer'

let clock: FakeClock | undefined

afterEach(() => {
  clock?.restore()
  clock = undefined
})

function degraded(options: CacheStackOptions = { gracefulDegradation: { failureThreshold: 2 } }) {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote], options)
  const circuit: CacheEventMap['circuit'][] = []
  const errors: CacheEventMap['error'][] = []
  cache.on('circuit', (event) => circuit.push(event))
  cache.on('error', (event) => errors.push(event))
  return { l1, remote, cache, circuit, errors }
}

describe('gracefulDegradation on a stack', () => {
  it('makes bypass the default: misses run the loader and writes skip the failing layer, counted', async () => {
    const { remote, cache } = degraded({ gracefulDegradation: {} })
    remote.fail()
    expect(await cache.get('a')).toBeUndefined()
    expect(await cache.getOrSet('b', () => 'loaded')).toBe('loaded')
    await cache.set('c', 'v')
    expect(await cache.get('c')).toBe('v')
    // The write-back of the load and the set: one key each, skipped on the remote layer.
    expect(cache.getStats().skippedWrites).toBe(2)
  })

  it('leaves an explicit onLayerError alone, per stack and per call', async () => {
    const strict = degraded({ onLayerError: 'throw', gracefulDegradation: {} })
    strict.remote.fail()
    await expect(strict.cache.get('a')).rejects.toBeInstanceOf(LayerUnavailableError)
    const { remote, cache } = degraded({ gracefulDegradation: {} })
    remote.fail()
    await expect(cache.get('a', { onLayerError: 'throw' })).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(await cache.get('a')).toBeUndefined()
  })

  it('opens the circuit after failureThreshold failures: the layer is not called any more', async () => {
    const { remote, cache, circuit, errors } = degraded()
    remote.fail()
    await cache.get('a')
    await cache.get('b')
    expect(circuit).toEqual([{ layer: 'remote', state: 'open' }])
    expect(cache.getStats().circuitOpens).toBe(1)
    const calls = remote.totalCalls
    errors.length = 0
    expect(await cache.getOrSet('c', () => 'loaded')).toBe('loaded')
    await cache.set('d', 'v')
    expect(await cache.get('e')).toBeUndefined()
    expect(await cache.has('f')).toBe(false)
    expect(await cache.mget(['g'])).toEqual([undefined])
    expect(remote.totalCalls).toBe(calls)
    expect(errors.length).toBeGreaterThan(0)
    for (const event of errors) {
      expect(event.error).toBeInstanceOf(CircuitOpenError)
      expect(event).toMatchObject({ layer: 'remote', handled: true })
    }
    expect(await cache.get('c')).toBe('loaded')
    expect(await cache.get('d')).toBe('v')
  })

  it('lets one probe through after retryAfterMs and closes when it succeeds', async () => {
    clock = useFakeClock()
    const { remote, cache, circuit } = degraded({
      gracefulDegradation: { failureThreshold: 1, retryAfterMs: 1_000 },
    })
    remote.fail()
    await cache.get('a')
    remote.recover()
    clock.advance(999)
    await cache.get('b')
    expect(remote.calls.get).toBe(1)
    clock.advance(1)
    // Two concurrent misses: one is the probe, the other is answered without calling the layer.
    const probe = remote.holdRequests('get')
    const reads = [cache.get('c'), cache.get('d')]
    await probe.reached()
    probe.release()
    await Promise.all(reads)
    expect(remote.calls.get).toBe(2)
    expect(circuit.map((event) => event.state)).toEqual(['open', 'half-open', 'closed'])
    await cache.set('e', 'v')
    expect(remote.peek('e')).toBe('v')
  })

  it('a failed probe keeps the layer switched off for another retryAfterMs', async () => {
    clock = useFakeClock()
    const { remote, cache, circuit } = degraded({
      gracefulDegradation: { failureThreshold: 1, retryAfterMs: 1_000 },
    })
    remote.fail()
    await cache.get('a')
    clock.advance(1_000)
    await cache.get('b')
    expect(circuit.map((event) => event.state)).toEqual(['open', 'half-open', 'open'])
    expect(cache.getStats().circuitOpens).toBe(2)
    await cache.get('c')
    expect(remote.calls.get).toBe(2)
  })

  it('deletes and invalidations still reject, at once with CircuitOpenError when open, and clear L1', async () => {
    const { l1, remote, cache } = degraded({ gracefulDegradation: { failureThreshold: 1 } })
    await cache.set('k', 'v', { tags: ['t'] })
    remote.fail()
    await cache.get('miss')
    const calls = remote.totalCalls
    await expect(cache.delete('k')).rejects.toBeInstanceOf(CircuitOpenError)
    expect(l1.get('k')).toBeUndefined()
    await cache.set('k2', 'v', { tags: ['t'] })
    await expect(cache.invalidateByTag('t')).rejects.toBeInstanceOf(CircuitOpenError)
    expect(remote.totalCalls).toBe(calls)
  })

  it('bad input is refused before any call and never counts against the layer', async () => {
    // An L1 that takes any value, so the remote layer's prepare is the one that refuses it.
    const remote = new RemoteLayer()
    const cache = new CacheStack([new MemoryLayer({ protection: 'none' }), remote], {
      gracefulDegradation: { failureThreshold: 1 },
    })
    const circuit: CacheEventMap['circuit'][] = []
    cache.on('circuit', (event) => circuit.push(event))
    for (let i = 0; i < 3; i++) {
      await expect(cache.set('k', { f: () => 1 })).rejects.toBeInstanceOf(SerializationError)
    }
    expect(circuit).toEqual([])
    await cache.set('k', 'v')
    expect(remote.peek('k')).toBe('v')
  })

  it('keeps the caller’s layer objects in `layers` and the capabilities of the wrapped layer', async () => {
    class SnapshottingLayer extends RemoteLayer {
      readonly fenceSnapshot = vi.fn(async () => 'snapshot')
    }
    const l1 = new MemoryLayer()
    const remote = new SnapshottingLayer()
    const cache = new CacheStack([l1, remote], { gracefulDegradation: {} })
    expect(cache.layers).toEqual([l1, remote])
    expect(cache.layers[1]).toBe(remote)
    await cache.getOrSet('k', () => 'v')
    expect(remote.fenceSnapshot).toHaveBeenCalledOnce()
    // RemoteLayer has no invalidateKeys: the wrapper must not pretend it has.
    await expect(cache.invalidateByPrefix('k')).rejects.toThrow(/cannot invalidate by prefix/)
  })

  it.each([
    ['not an object', 'yes'],
    ['null', null],
    ['an unknown key', { retryAfter: 10 }],
    ['a zero retryAfterMs', { retryAfterMs: 0 }],
    ['a fractional retryAfterMs', { retryAfterMs: 0.5 }],
    ['a negative failureThreshold', { failureThreshold: -3 }],
    ['a string failureThreshold', { failureThreshold: '5' }],
  ])('rejects an option that is %s', (_, value) => {
    expect(
      () => new CacheStack([new MemoryLayer(), new RemoteLayer()], { gracefulDegradation: value as never }),
    ).toThrow(InvalidOptionError)
  })
})
