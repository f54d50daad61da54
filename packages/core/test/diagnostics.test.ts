/**
 * The diagnostics_channel contract: what each traced call carries when it ends (which layer answered,
 * stale, coalesced, loaded, fenced, degraded), and what `operation.done` (the metrics channel) publishes:
 * every call past memory, never a memory hit.
 */
import { channel, subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import {
  type CacheOperationContext,
  CacheStack,
  type InvalidationContext,
  InvalidKeyError,
  InvalidOptionError,
  type LoadContext,
  type OperationDone,
  PLAIN_CHANNELS,
  TRACING_CHANNELS,
} from '@layercache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer } from './support/remote-layer'

type Ended = { name: string; context: Record<string, unknown>; events: string[] }

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

/** Subscribes to every tracing channel; each call's context is recorded once it ends (or fails). */
function traceAll(): Ended[] {
  const ended: Ended[] = []
  for (const name of Object.values(TRACING_CHANNELS)) {
    const events = new WeakMap<object, string[]>()
    const note = (kind: string) => (context: object) => {
      const list = events.get(context) ?? []
      list.push(kind)
      events.set(context, list)
      if (kind === 'asyncEnd') ended.push({ name, context: { ...context }, events: list })
    }
    const handlers = {
      start: note('start'),
      end: note('end'),
      asyncStart: note('asyncStart'),
      asyncEnd: note('asyncEnd'),
      error: note('error'),
    }
    tracingChannel(name).subscribe(handlers)
    cleanups.push(() => tracingChannel(name).unsubscribe(handlers))
  }
  return ended
}

/** Subscribes to the metrics channel only. */
function metricsOnly(): OperationDone[] {
  const done: OperationDone[] = []
  const listener = (message: unknown) => done.push(message as OperationDone)
  subscribe(PLAIN_CHANNELS.operationDone, listener)
  cleanups.push(() => unsubscribe(PLAIN_CHANNELS.operationDone, listener))
  return done
}

function twoLayers(options = {}) {
  const l1 = new MemoryLayer()
  const remote = new RemoteLayer()
  const cache = new CacheStack([l1, remote], { name: 'shop', ...options })
  return { l1, remote, cache }
}

const only = (ended: Ended[], name: string) => ended.filter((item) => item.name === name)

describe('diagnostics channels', () => {
  it('nobody subscribed: no channel reports subscribers (the stack only reads the flags)', async () => {
    const { cache } = twoLayers()
    await cache.set('a', 1)
    expect(await cache.get('a')).toBe(1)
    for (const name of Object.values(TRACING_CHANNELS)) {
      expect((tracingChannel(name) as unknown as { hasSubscribers: boolean }).hasSubscribers).toBe(false)
    }
    expect(channel(PLAIN_CHANNELS.operationDone).hasSubscribers).toBe(false)
  })

  it('get: a memory hit, a hit below memory and a miss each say which layer answered', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('m', 1)
    remote.seed('r', 2)
    const ended = traceAll()
    expect(await cache.get('m')).toBe(1)
    expect(await cache.get('r')).toBe(2)
    expect(await cache.get('none')).toBeUndefined()
    const gets = only(ended, TRACING_CHANNELS.get)
    expect(gets.map((item) => item.context)).toEqual([
      expect.objectContaining({ operation: 'get', cache: 'shop', key: 'm', layer: 'memory', hit: true }),
      expect.objectContaining({ key: 'r', layer: 'remote', hit: true, result: 2 }),
      expect.objectContaining({ key: 'none', keyCount: 1, result: undefined }),
    ])
    expect(gets[2]!.context.layer).toBeUndefined()
    expect(gets[0]!.events).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
  })

  it('namespaces and generations: the key is the stored one', async () => {
    const { cache } = twoLayers()
    const ended = traceAll()
    await cache.namespace('tenant-1').get('a')
    expect(only(ended, TRACING_CHANNELS.get)[0]!.context.key).toBe('tenant-1:a')
  })

  it('getOrSet: loaded by this call, then coalesced, with the load traced on its own channel', async () => {
    const { cache } = twoLayers()
    const ended = traceAll()
    const gate = deferred<string>()
    const first = cache.getOrSet('k', () => gate.promise)
    const second = cache.getOrSet('k', () => 'never')
    gate.resolve('v')
    expect(await Promise.all([first, second])).toEqual(['v', 'v'])
    const calls = only(ended, TRACING_CHANNELS.getOrSet).map((item) => item.context)
    expect(calls).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ operation: 'getOrSet', key: 'k', loaded: true, result: 'v' }),
        expect.objectContaining({ operation: 'getOrSet', key: 'k', coalesced: true, result: 'v' }),
      ]),
    )
    const loads = only(ended, TRACING_CHANNELS.load).map((item) => item.context as unknown as LoadContext)
    expect(loads).toHaveLength(1)
    expect(loads[0]).toMatchObject({
      cache: 'shop',
      key: 'k',
      trigger: 'miss',
      loaded: true,
      writeBack: 'written',
    })
    expect(loads[0]!.loaderMs).toBeGreaterThanOrEqual(0)
    // A memory hit afterwards names the layer and runs no load.
    await cache.getOrSet('k', () => 'never')
    expect(only(ended, TRACING_CHANNELS.getOrSet).at(-1)!.context).toMatchObject({
      layer: 'memory',
      hit: true,
    })
    expect(only(ended, TRACING_CHANNELS.load)).toHaveLength(1)
  })

  it('getOrSet: a value found below memory names that layer, not the loader', async () => {
    const { remote, cache } = twoLayers()
    remote.seed('k', 'from-remote')
    const ended = traceAll()
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('from-remote')
    const call = only(ended, TRACING_CHANNELS.getOrSet)[0]!.context
    expect(call).toMatchObject({ layer: 'remote', hit: true })
    expect(call.loaded).toBeUndefined()
  })

  it('getOrSet: a stale answer says so, and its background refresh is a load triggered by "stale"', async () => {
    let now = 1_000_000
    const realNow = Date.now
    Date.now = () => now
    cleanups.push(() => {
      Date.now = realNow
    })
    const { cache } = twoLayers({ ttl: 1000, staleWhileRevalidate: 10_000 })
    await cache.getOrSet('k', () => 'old')
    now += 2000
    const ended = traceAll()
    const refreshed = deferred<string>()
    expect(await cache.getOrSet('k', () => refreshed.promise)).toBe('old')
    expect(only(ended, TRACING_CHANNELS.getOrSet)[0]!.context).toMatchObject({
      layer: 'memory',
      stale: 'revalidate',
    })
    refreshed.resolve('new')
    await expect.poll(() => only(ended, TRACING_CHANNELS.load).length).toBe(1)
    expect(only(ended, TRACING_CHANNELS.load)[0]!.context).toMatchObject({
      trigger: 'stale',
      loaded: true,
      writeBack: 'written',
    })
  })

  it('getOrSet: a write-back refused because of a delete during the load is reported as fenced', async () => {
    const { cache } = twoLayers()
    const ended = traceAll()
    const gate = deferred<string>()
    const loading = cache.getOrSet('k', () => gate.promise)
    // The load took its ticket synchronously: a delete now lands while it runs.
    await cache.delete('k')
    gate.resolve('v')
    expect(await loading).toBe('v')
    expect(only(ended, TRACING_CHANNELS.getOrSet)[0]!.context).toMatchObject({ loaded: true, fenced: true })
    expect(only(ended, TRACING_CHANNELS.load)[0]!.context).toMatchObject({ writeBack: 'fenced' })
    expect(await cache.get('k')).toBeUndefined()
  })

  it('a layer that fails in bypass mode marks the call degraded', async () => {
    const { remote, cache } = twoLayers({ onLayerError: 'bypass' })
    remote.fail(['get'])
    const ended = traceAll()
    expect(await cache.get('k')).toBeUndefined()
    expect(only(ended, TRACING_CHANNELS.get)[0]!.context).toMatchObject({ degraded: true })
  })

  it('a layer skipped because its circuit is open is named on the call', async () => {
    const { remote, cache } = twoLayers({
      gracefulDegradation: { failureThreshold: 1, retryAfterMs: 60_000 },
    })
    remote.fail(['get'])
    expect(await cache.get('first')).toBeUndefined() // opens the circuit
    const ended = traceAll()
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.getOrSet('g', () => 'loaded')).toBe('loaded')
    expect(only(ended, TRACING_CHANNELS.get)[0]!.context).toMatchObject({
      degraded: true,
      circuitOpen: 'remote',
    })
    expect(only(ended, TRACING_CHANNELS.getOrSet)[0]!.context).toMatchObject({
      circuitOpen: 'remote',
      loaded: true,
    })
  })

  it('a bad key rejects through the error channel with the key as given', async () => {
    const { cache } = twoLayers()
    const ended = traceAll()
    await expect(cache.get('')).rejects.toThrow(InvalidKeyError)
    const failed = only(ended, TRACING_CHANNELS.get)[0]!
    expect(failed.events).toContain('error')
    expect(failed.context.error).toBeInstanceOf(InvalidKeyError)
  })

  it('writes, deletes, batches and invalidations carry their own contexts', async () => {
    const { cache } = twoLayers()
    const ended = traceAll()
    await cache.set('a', 1, { tags: ['t'] })
    await cache.mset([
      { key: 'b', value: 2, tags: ['t'] },
      { key: 'c', value: 3 },
    ])
    expect(await cache.mget(['a', 'b', 'zz'])).toEqual([1, 2, undefined])
    await cache.delete('c')
    expect(await cache.invalidateByTag('t')).toBe(2)
    const memoryOnly = new CacheStack([new MemoryLayer()], { name: 'local' })
    await memoryOnly.set('user:1:a', 1)
    expect(await memoryOnly.invalidateByPrefix('user:1:')).toBe(1)
    const contexts = ended
      .filter((item) => item.name !== TRACING_CHANNELS.invalidate)
      .map((item) => item.context as unknown as CacheOperationContext)
    expect(contexts.map((c) => [c.operation, c.key, c.keyCount])).toEqual([
      ['set', 'a', 1],
      ['mset', 'b', 2],
      ['mget', 'a', 3],
      ['delete', 'c', 1],
      ['set', 'user:1:a', 1],
    ])
    expect(contexts.find((c) => c.operation === 'mget')!.hit).toBe(false)
    const invalidations = ended
      .filter((item) => item.name === TRACING_CHANNELS.invalidate)
      .map((item) => item.context as unknown as InvalidationContext)
    expect(invalidations).toEqual([
      expect.objectContaining({ kind: 'tags', target: ['t'], count: 2, cache: 'shop' }),
      expect.objectContaining({ kind: 'prefix', target: ['user:1:'], count: 1, cache: 'local' }),
    ])
  })

  it('metrics channel: calls past memory are timed, memory hits are not published', async () => {
    const { remote, cache } = twoLayers()
    await cache.set('m', 1)
    remote.seed('r', 2)
    const done = metricsOnly()
    await cache.get('m')
    await cache.getOrSet('m', () => 0)
    expect(done).toEqual([])
    await cache.get('r')
    await cache.getOrSet('fresh', () => 'v')
    await expect(cache.get('')).rejects.toThrow(InvalidKeyError)
    const seen = done.map((item) => [item.context.operation, (item.context as { key?: string }).key])
    expect(seen).toEqual([
      ['get', 'r'],
      ['load', 'fresh'],
      ['getOrSet', 'fresh'],
    ])
    for (const item of done) expect(item.durationMs).toBeGreaterThanOrEqual(0)
    expect(done[0]!.context).toMatchObject({ layer: 'remote', hit: true })
    expect(done[1]!.context).toMatchObject({ loaded: true, writeBack: 'written' })
  })

  it('with a tracer as well, a memory hit is traced but still not timed on operation.done', async () => {
    const { cache } = twoLayers()
    await cache.set('m', 1)
    const ended = traceAll()
    const done = metricsOnly()
    await cache.get('m')
    await cache.getOrSet('m', () => 0)
    expect(only(ended, TRACING_CHANNELS.get)[0]!.context).toMatchObject({ layer: 'memory', inProcess: true })
    expect(done).toEqual([])
    await cache.get('elsewhere')
    expect(done.map((item) => item.context.operation)).toEqual(['get'])
  })

  it('the name option is checked', () => {
    expect(() => new CacheStack([new MemoryLayer()], { name: '' })).toThrow(InvalidOptionError)
    expect(() => new CacheStack([new MemoryLayer()], { name: 42 as unknown as string })).toThrow(
      InvalidOptionError,
    )
  })
})
