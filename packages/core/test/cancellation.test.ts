import { CacheStack, InvalidOptionError, type LoaderContext } from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { deferred, MemoryLayer, RemoteLayer } from './support/remote-layer'

/** A loader that answers when told, and records every call's signal. */
function heldLoader<T>(value: T) {
  const release = deferred()
  const signals: AbortSignal[] = []
  const started = deferred()
  return {
    loader: async (ctx: LoaderContext<T>) => {
      signals.push(ctx.signal)
      started.resolve()
      await release.promise
      return value
    },
    release: () => release.resolve(),
    started: started.promise,
    signals,
  }
}

function stack() {
  const remote = new RemoteLayer()
  return { remote, cache: new CacheStack([new MemoryLayer(), remote]) }
}

describe('a per-call signal on getOrSet', () => {
  it('stops only the aborting caller; the shared load goes on and is cached', async () => {
    const { cache, remote } = stack()
    const load = heldLoader('v')
    const leaving = new AbortController()
    const staying = new AbortController()
    const first = cache.getOrSet('k', load.loader, { signal: leaving.signal })
    const second = cache.getOrSet('k', load.loader, { signal: staying.signal })
    const third = cache.getOrSet('k', load.loader)
    await load.started
    const reason = new Error('client went away')
    leaving.abort(reason)
    await expect(first).rejects.toBe(reason)
    load.release()
    expect(await second).toBe('v')
    expect(await third).toBe('v')
    expect(load.signals).toHaveLength(1)
    expect(load.signals[0]!.aborted).toBe(false)
    expect((await remote.get('k'))?.value).toBe('v')
  })

  it('aborts the load (ctx.signal) once every waiter aborted, and the next caller loads afresh', async () => {
    const { cache } = stack()
    const load = heldLoader('old')
    const a = new AbortController()
    const b = new AbortController()
    const first = cache.getOrSet('k', load.loader, { signal: a.signal })
    const second = cache.getOrSet('k', load.loader, { signal: b.signal })
    await load.started
    a.abort()
    expect(load.signals[0]!.aborted).toBe(false) // b still waits
    b.abort()
    await expect(first).rejects.toMatchObject({ name: 'AbortError' })
    await expect(second).rejects.toMatchObject({ name: 'AbortError' })
    expect(load.signals[0]!.aborted).toBe(true)
    expect(load.signals[0]!.reason).toMatchObject({ name: 'AbortError' })
    const fresh = await cache.getOrSet('k', () => 'new')
    expect(fresh).toBe('new')
  })

  it('never aborts a load a caller without a signal waits for', async () => {
    const { cache } = stack()
    const load = heldLoader('v')
    const a = new AbortController()
    const first = cache.getOrSet('k', load.loader, { signal: a.signal })
    const plain = cache.getOrSet('k', load.loader)
    await load.started
    a.abort()
    await expect(first).rejects.toMatchObject({ name: 'AbortError' })
    expect(load.signals[0]!.aborted).toBe(false)
    load.release()
    expect(await plain).toBe('v')
  })

  it('rejects with a DOMException AbortError carrying a reason that is not an Error', async () => {
    const { cache } = stack()
    const load = heldLoader('v')
    const controller = new AbortController()
    const waiting = cache.getOrSet('k', load.loader, { signal: controller.signal })
    await load.started
    controller.abort('shutting down')
    const error = await waiting.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(DOMException)
    expect(error).toMatchObject({ name: 'AbortError', cause: 'shutting down' })
  })

  it('passes a timeout signal’s TimeoutError through as it is', async () => {
    const { cache } = stack()
    const load = heldLoader('v')
    const controller = new AbortController()
    const waiting = cache.getOrSet('k', load.loader, { signal: controller.signal })
    await load.started
    const timeout = new DOMException('signal timed out', 'TimeoutError')
    controller.abort(timeout)
    await expect(waiting).rejects.toBe(timeout)
  })

  it('rejects at once for an already aborted signal: no loader call, nothing cached', async () => {
    const { cache, remote } = stack()
    let calls = 0
    const reason = new Error('too late')
    await expect(
      cache.getOrSet(
        'k',
        () => {
          calls++
          return 'v'
        },
        { signal: AbortSignal.abort(reason) },
      ),
    ).rejects.toBe(reason)
    expect(calls).toBe(0)
    expect(await remote.get('k')).toBeUndefined()
  })

  it('applies to every call of a wrapped function built with it', async () => {
    const { cache } = stack()
    const load = heldLoader('v')
    const controller = new AbortController()
    const wrapped = cache.wrap('fn', (_id: number) => load.loader({ signal: controller.signal } as never), {
      signal: controller.signal,
    })
    const waiting = wrapped(1)
    await load.started
    controller.abort()
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('a per-call signal on get, mget and has', () => {
  it('stops the wait for a slow remote read with the signal’s reason; the read itself goes on', async () => {
    const { cache, remote } = stack()
    await cache.set('k', 'v')
    cache.layers[0]!.delete('k')
    const held = remote.holdResponses('get')
    const controller = new AbortController()
    const read = cache.get('k', { signal: controller.signal })
    await held.reached()
    const reason = new Error('request cancelled')
    controller.abort(reason)
    await expect(read).rejects.toBe(reason)
    held.release()
    expect(await cache.get('k')).toBe('v')
  })

  it('mget and has reject when their signal aborts', async () => {
    const { cache, remote } = stack()
    await cache.set('k', 'v')
    cache.layers[0]!.delete('k')
    const heldMany = remote.holdResponses('getMany')
    const heldHas = remote.holdResponses('has')
    const controller = new AbortController()
    const many = cache.mget(['k'], { signal: controller.signal })
    const has = cache.has('k', { signal: controller.signal })
    await Promise.all([heldMany.reached(), heldHas.reached()])
    controller.abort()
    await expect(many).rejects.toMatchObject({ name: 'AbortError' })
    await expect(has).rejects.toMatchObject({ name: 'AbortError' })
    heldMany.release()
    heldHas.release()
    expect(await cache.mget(['k'])).toEqual(['v'])
  })

  it('answers a memory hit but not with an already aborted signal', async () => {
    const { cache } = stack()
    await cache.set('k', 'v')
    expect(await cache.get('k', { signal: new AbortController().signal })).toBe('v')
    await expect(cache.get('k', { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'AbortError',
    })
  })
})

describe('bad signals', () => {
  it('are refused with InvalidOptionError, and refresh, warm and addWarmer take none', async () => {
    const { cache } = stack()
    const bad = { signal: 'nope' } as never
    await expect(cache.get('k', bad)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.mget(['k'], bad)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.getOrSet('k', () => 1, bad)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(() => cache.wrap('w', () => 1, bad)).toThrow(InvalidOptionError)
    const signal = { signal: new AbortController().signal }
    await expect(cache.refresh('k', () => 1, signal)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(cache.warm([{ key: 'k', loader: () => 1, options: signal }])).rejects.toBeInstanceOf(
      InvalidOptionError,
    )
    expect(() => cache.addWarmer('k', () => 1, signal)).toThrow(InvalidOptionError)
    expect(await cache.get('k')).toBeUndefined()
  })
})
