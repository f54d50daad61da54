/**
 * Invariant 6, "degrade, never hang", against a real spawned Redis that is killed, paused (SIGSTOP) and
 * restarted: with `gracefulDegradation` the stack keeps serving from memory and loaders, and a circuit
 * breaker stops calling Redis after repeated failures until a probe finds it back.
 */
import {
  type CacheEventMap,
  CacheStack,
  CircuitOpenError,
  InvalidOptionError,
  LayerCacheError,
  LayerTimeoutError,
  LayerUnavailableError,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { connectionLost, spawnTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

const FAILURE_THRESHOLD = 3
/** Long enough that an open circuit stays open through a test's assertions, however slow the machine. */
const STAYS_OPEN_MS = 60_000
/** For the tests that wait for the probe. */
const SHORT_RETRY_MS = 200

let redis: TestRedis
let client: Redis
let layer: RedisLayer
let cache: CacheStack
let circuit: CacheEventMap['circuit'][]
let errors: CacheEventMap['error'][]

beforeEach(async () => {
  redis = await spawnTestRedis()
  // Default ioredis settings: a client that keeps reconnecting while the server is away.
  client = redis.createClient()
  client.on('error', () => {}) // reconnect noise while the server is down on purpose
  await client.ping()
  useStack(STAYS_OPEN_MS)
})

function useStack(retryAfterMs: number): void {
  layer = new RedisLayer({ client, prefix: redis.keyPrefix, commandTimeout: 100 })
  cache = new CacheStack([new MemoryLayer({ ttl: 60_000 }), layer], {
    gracefulDegradation: { failureThreshold: FAILURE_THRESHOLD, retryAfterMs },
  })
  circuit = []
  errors = []
  cache.on('circuit', (event) => circuit.push(event))
  cache.on('error', (event) => errors.push(event))
}

afterEach(async () => {
  redis.server?.resume()
  await redis.close()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function killRedis(): Promise<void> {
  await redis.server!.kill()
  await connectionLost(client) // ioredis noticed the closed socket
}

/** Misses on distinct keys until the breaker has opened (each one fails against the dead server). */
async function openCircuit(): Promise<void> {
  for (let i = 0; i < FAILURE_THRESHOLD * 4 && circuit.length === 0; i++) await cache.get(`cold:${i}`)
  expect(circuit).toEqual([{ layer: 'redis', state: 'open' }])
}

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(25)
  }
}

describe('gracefulDegradation with Redis killed', () => {
  it('serves L1 hits, runs loaders for uncached keys, and resolves sets from L1, counting skipped writes', async () => {
    await cache.set('warm', 'v')
    await killRedis()
    expect(await cache.get('warm')).toBe('v')
    expect(await cache.getOrSet('warm', () => 'loader')).toBe('v')

    const loader = vi.fn(() => 'from-db')
    expect(await cache.getOrSet('cold', loader)).toBe('from-db')
    expect(loader).toHaveBeenCalledOnce()
    expect(await cache.get('cold')).toBe('from-db')

    await cache.set('new', 'n')
    expect(await cache.get('new')).toBe('n')
    // The load's write-back and the set: one key each that Redis did not take.
    expect(cache.getStats().skippedWrites).toBe(2)
    expect(errors.length).toBeGreaterThan(0)
    expect(errors.every((event) => event.handled && event.error instanceof LayerUnavailableError)).toBe(true)
  })

  it('opens the circuit after failureThreshold failures; then calls no longer reach the Redis layer', async () => {
    await killRedis()
    await openCircuit()
    expect(cache.getStats().circuitOpens).toBe(1)

    const get = vi.spyOn(layer, 'get')
    const has = vi.spyOn(layer, 'has')
    const snapshot = vi.spyOn(layer, 'fenceSnapshot')
    errors.length = 0
    expect(await cache.get('other')).toBeUndefined()
    expect(await cache.has('other')).toBe(false)
    expect(await cache.mget(['a', 'b'])).toEqual([undefined, undefined])
    expect(await cache.getOrSet('loaded', () => 'from-db')).toBe('from-db')
    await cache.set('written', 'w')
    expect(get).not.toHaveBeenCalled()
    expect(has).not.toHaveBeenCalled()
    expect(snapshot).not.toHaveBeenCalled()
    // Had the layer been called, its own LayerUnavailableError (connection closed) would show here.
    expect(errors.length).toBeGreaterThanOrEqual(5)
    for (const event of errors) {
      expect(event.error).toBeInstanceOf(CircuitOpenError)
      expect(event).toMatchObject({ layer: 'redis', handled: true })
    }
    expect((errors[0]!.error as CircuitOpenError).code).toBe('CIRCUIT_OPEN')
    expect(await cache.get('written')).toBe('w')
  })

  it('recovers by itself: after a restart and retryAfterMs a probe closes the circuit and writes reach Redis', async () => {
    useStack(SHORT_RETRY_MS)
    await killRedis()
    await openCircuit()
    await redis.server!.restart()
    // No user action: ordinary traffic probes once retryAfterMs has passed (and again after a failed probe
    // while the client is still reconnecting).
    await waitFor(async () => {
      await cache.get('probe')
      return circuit.at(-1)?.state === 'closed'
    })
    expect(circuit.slice(0, 2).map((event) => event.state)).toEqual(['open', 'half-open'])
    await cache.set('after', 'back')
    const raw = redis.createClient()
    expect(await raw.exists(`${redis.keyPrefix}after`)).toBe(1)
    const reader = new CacheStack([new RedisLayer({ client: raw, prefix: redis.keyPrefix })])
    expect(await reader.get('after')).toBe('back')
  })

  it('delete rejects with a LayerCacheError and the L1 copy is gone; at once with CircuitOpenError when open', async () => {
    await cache.set('k', 'v')
    await cache.set('k2', 'v2')
    await killRedis()
    const failed = await cache.delete('k').catch((error: unknown) => error)
    expect(failed).toBeInstanceOf(LayerCacheError)
    expect(failed).toBeInstanceOf(LayerUnavailableError)
    expect(await cache.get('k')).toBeUndefined()

    await openCircuit()
    const del = vi.spyOn(layer, 'delete')
    await expect(cache.delete('k2')).rejects.toBeInstanceOf(CircuitOpenError)
    expect(del).not.toHaveBeenCalled()
    expect(await cache.get('k2')).toBeUndefined()
    await expect(cache.invalidateByPrefix('')).rejects.toBeInstanceOf(LayerCacheError)
  })
})

describe('gracefulDegradation with Redis paused (SIGSTOP: connection open, no answers)', () => {
  it('calls time out, the breaker opens, every promise settles and no call waits for the timeout any more', async () => {
    await cache.set('warm', 'v')
    redis.server!.pause()
    const loader = vi.fn((context: { key: string }) => `db:${context.key}`)
    const first = await Promise.allSettled([
      cache.get('warm'),
      ...Array.from({ length: FAILURE_THRESHOLD }, (_, i) => cache.getOrSet(`cold:${i}`, loader)),
    ])
    expect(first.map((outcome) => outcome.status === 'fulfilled' && outcome.value)).toEqual([
      'v',
      ...Array.from({ length: FAILURE_THRESHOLD }, (_, i) => `db:cold:${i}`),
    ])
    expect(errors.some((event) => event.error instanceof LayerTimeoutError)).toBe(true)
    expect(circuit).toEqual([{ layer: 'redis', state: 'open' }])

    const timeoutsSoFar = errors.filter((event) => event.error instanceof LayerTimeoutError).length
    const get = vi.spyOn(layer, 'get')
    const second = await Promise.allSettled([
      cache.get('warm'),
      cache.get('still-cold'),
      cache.getOrSet('more', () => 'loaded'),
      cache.set('written', 'w'),
      cache.has('nothing'),
      cache.mget(['warm', 'nothing']),
    ])
    expect(second.every((outcome) => outcome.status === 'fulfilled')).toBe(true)
    expect(second.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value)).toEqual([
      'v',
      undefined,
      'loaded',
      undefined,
      false,
      ['v', undefined],
    ])
    expect(get).not.toHaveBeenCalled()
    expect(errors.filter((event) => event.error instanceof LayerTimeoutError)).toHaveLength(timeoutsSoFar)
  }, 60_000)

  it('after a resume and retryAfterMs a probe closes the circuit and writes reach Redis again', async () => {
    useStack(SHORT_RETRY_MS)
    redis.server!.pause()
    await Promise.allSettled(Array.from({ length: FAILURE_THRESHOLD }, (_, i) => cache.get(`cold:${i}`)))
    expect(circuit).toEqual([{ layer: 'redis', state: 'open' }])
    redis.server!.resume()
    await waitFor(async () => {
      await cache.get('probe')
      return circuit.at(-1)?.state === 'closed'
    })
    await cache.set('after', 'back')
    expect(await redis.createClient().exists(`${redis.keyPrefix}after`)).toBe(1)
  }, 60_000)
})

describe('gracefulDegradation options', () => {
  it.each([
    ['not an object', true],
    ['null', null],
    ['an unknown key', { retryAfterMs: 100, threshold: 3 }],
    ['a zero retryAfterMs', { retryAfterMs: 0 }],
    ['a fractional retryAfterMs', { retryAfterMs: 12.5 }],
    ['a zero failureThreshold', { failureThreshold: 0 }],
    ['a string failureThreshold', { failureThreshold: '5' }],
  ])('rejects a value that is %s with InvalidOptionError', (_, value) => {
    expect(
      () =>
        new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: redis.keyPrefix })], {
          gracefulDegradation: value as never,
        }),
    ).toThrow(InvalidOptionError)
  })
})
