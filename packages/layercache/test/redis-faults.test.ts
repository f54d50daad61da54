import {
  connectionLost,
  connectionReady,
  type RedisServerHandle,
  startRedisServer,
} from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { CacheStack, LayerTimeoutError, LayerUnavailableError, MemoryLayer, RedisLayer } from '../src'

/** Resolves to 'pending' if `promise` has not settled within `ms`: how a test tells "answered" from "hung". */
async function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<'pending' | { value: T } | { error: unknown }> {
  let timer: NodeJS.Timeout | undefined
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms)
  })
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      pending,
    ])
  } finally {
    clearTimeout(timer)
  }
}

let server: RedisServerHandle
let client: Redis
let cache: CacheStack

beforeEach(async () => {
  server = await startRedisServer()
  // Default ioredis settings: a user's client that keeps reconnecting and queues commands offline.
  client = new Redis(server.url)
  client.on('error', () => {}) // reconnect noise while the server is down on purpose
  await client.ping()
  cache = new CacheStack([
    new MemoryLayer({ ttl: 60_000 }),
    new RedisLayer({ client, prefix: 'faults', commandTimeout: 200 }),
  ])
})

afterEach(async () => {
  client.disconnect()
  await server.stop()
})

describe('with Redis paused (SIGSTOP: connection open, no answers)', () => {
  it('L1 hits still answer at once', async () => {
    await cache.set('warm', 'v')
    server.pause()
    try {
      expect(await settledWithin(cache.get('warm'), 50)).toEqual({ value: 'v' })
      expect(
        await settledWithin(
          cache.getOrSet('warm', () => 'loader'),
          50,
        ),
      ).toEqual({ value: 'v' })
    } finally {
      server.resume()
    }
  })

  it('a miss fails with a typed timeout instead of hanging', async () => {
    server.pause()
    try {
      const outcome = await settledWithin(cache.get('cold'), 2_000)
      expect(outcome).not.toBe('pending')
      expect((outcome as { error: unknown }).error).toBeInstanceOf(LayerTimeoutError)
    } finally {
      server.resume()
    }
  })

  it('getOrSet falls through to the loader when asked, and keeps the value in L1', async () => {
    server.pause()
    try {
      const value = await cache.getOrSet('cold', () => 'from-db', { onLayerError: 'bypass' })
      expect(value).toBe('from-db')
      expect(await settledWithin(cache.get('cold'), 50)).toEqual({ value: 'from-db' })
      expect(cache.getStats().layers[1]?.errors).toBeGreaterThan(0)
    } finally {
      server.resume()
    }
  })

  it('a set that cannot reach Redis rejects and leaves no new value in L1', async () => {
    await cache.set('k', 'old')
    server.pause()
    try {
      const outcome = await settledWithin(cache.set('k', 'new'), 2_000)
      expect((outcome as { error: unknown }).error).toBeInstanceOf(LayerUnavailableError)
      expect(await settledWithin(cache.get('k', { onLayerError: 'bypass' }), 1_000)).not.toEqual({
        value: 'new',
      })
    } finally {
      server.resume()
    }
  })

  it('a set that timed out is not sent again on NOSCRIPT: a later delete that resolved keeps the key gone', async () => {
    // Another instance on a connection of its own.
    const otherClient = new Redis(server.url)
    const other = new CacheStack([new RedisLayer({ client: otherClient, prefix: 'faults' })])
    // Resolves once this client has the answer to every EVALSHA it sent so far (NOSCRIPT ones included).
    const evalsha = client.evalsha.bind(client) as (...args: unknown[]) => Promise<unknown>
    const answers: Promise<unknown>[] = []
    ;(client as unknown as { evalsha: typeof evalsha }).evalsha = (...args) => {
      const answer = evalsha(...args)
      answers.push(answer.catch(() => undefined))
      return answer
    }
    try {
      // This layer's first write reads the key layout; the next one is a single script.
      await cache.set('price', 'first')
      // Redis forgets its scripts (a restart, a replica promoted); the other instance's delete loads its
      // script again, so only the set's script is unknown there.
      await client.script('FLUSH')
      await other.delete('price')
      let deleted: Promise<void>
      server.pause()
      try {
        await expect(cache.set('price', 'old')).rejects.toBeInstanceOf(LayerTimeoutError)
        // Issued after the set failed: it waits on its socket behind the set's EVALSHA.
        deleted = other.delete('price')
        await new Promise((resolve) => setImmediate(resolve))
      } finally {
        server.resume()
      }
      await deleted
      // The set's EVALSHA was answered (NOSCRIPT); anything sent after that answer went out before this
      // macrotask, and has run once a PING sent behind it is answered.
      await Promise.all(answers)
      await new Promise((resolve) => setImmediate(resolve))
      await client.ping()
      expect(await other.get('price')).toBeUndefined()
    } finally {
      otherClient.disconnect()
    }
  })
})

describe('long pipelines (a large invalidation) with Redis paused', () => {
  /** A layer with commandTimeout 300 ms and a pipeline of `commands` PINGs. */
  function pipelineOf(commands: number) {
    const layer = new RedisLayer({ client, prefix: 'faults-long', commandTimeout: 300 })
    const pipe = client.pipeline()
    for (let i = 0; i < commands; i++) pipe.ping()
    return { layer, pipe }
  }

  it('a long pipeline gets commandTimeout per slice of 32 commands, and is still bounded', async () => {
    // 200 commands: 7 slices, a 2.1 s bound; 10 commands: one slice, 300 ms.
    const long = pipelineOf(200)
    const short = pipelineOf(10)
    server.pause()
    const resumeTimer = setTimeout(() => server.resume(), 700)
    try {
      const [longOutcome, shortOutcome] = await Promise.all([
        settledWithin(long.layer.execPipeline('long', long.pipe), 5_000),
        settledWithin(short.layer.execPipeline('short', short.pipe), 5_000),
      ])
      expect(longOutcome).toEqual({ value: new Array(200).fill('PONG') })
      expect((shortOutcome as { error: unknown }).error).toBeInstanceOf(LayerTimeoutError)
    } finally {
      clearTimeout(resumeTimer)
      server.resume()
    }
    const stuck = pipelineOf(200)
    server.pause()
    try {
      const outcome = await settledWithin(stuck.layer.execPipeline('long', stuck.pipe), 5_000)
      expect(outcome).not.toBe('pending')
      expect((outcome as { error: unknown }).error).toBeInstanceOf(LayerTimeoutError)
    } finally {
      server.resume()
    }
  })
})

describe('with Redis stopped (process killed)', () => {
  it('hits answer from L1, misses fail fast with LayerUnavailableError, delete still clears L1 but rejects', async () => {
    await cache.set('warm', 'v')
    await server.kill()
    await connectionLost(client) // ioredis noticed the closed socket
    expect(await settledWithin(cache.get('warm'), 50)).toEqual({ value: 'v' })

    const miss = await settledWithin(cache.get('cold'), 150)
    expect(miss).not.toBe('pending') // failed before the 200 ms command timeout: no queueing
    const error = (miss as { error: unknown }).error
    expect(error).toBeInstanceOf(LayerUnavailableError)
    expect(error).not.toBeInstanceOf(LayerTimeoutError)

    const loaded = await cache.getOrSet('cold', () => 'from-db', { onLayerError: 'bypass' })
    expect(loaded).toBe('from-db')

    await expect(cache.delete('warm')).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(await cache.get('warm', { onLayerError: 'bypass' })).toBeUndefined()
  })

  it('recovers by itself when Redis comes back', async () => {
    await server.kill()
    await connectionLost(client)
    await expect(cache.get('k')).rejects.toBeInstanceOf(LayerUnavailableError)
    await server.restart()
    await connectionReady(client) // ioredis reconnected by itself: the cache works again at once
    await cache.set('k', 'after-restart')
    const reader = new CacheStack([new RedisLayer({ client, prefix: 'faults' })])
    expect(await reader.get('k')).toBe('after-restart')
  })
})

describe('with Redis restarted empty', () => {
  it('a load that began before the restart does not write back what a delete before it removed', async () => {
    const peerClient = client.duplicate()
    peerClient.on('error', () => {})
    const peer = new CacheStack([
      new RedisLayer({ client: peerClient, prefix: 'faults', commandTimeout: 200 }),
    ])
    try {
      let started!: () => void
      const loaderStarted = new Promise<void>((resolve) => {
        started = resolve
      })
      let release!: () => void
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      const loading = cache.getOrSet('row', async () => {
        started()
        await released
        return 'read before the delete'
      })
      await loaderStarted
      await peer.delete('row') // the database changed; the delete's fence counter is in Redis…
      const lost = connectionLost(client)
      await server.restart() // …and lost with everything else
      await lost
      await connectionReady(client)
      release()
      expect(await loading).toBe('read before the delete') // its caller still gets what it loaded
      const reader = new CacheStack([new RedisLayer({ client, prefix: 'faults' })])
      expect(await reader.get('row')).toBeUndefined()
      expect(await cache.get('row')).toBeUndefined()
      expect(cache.getStats().fencedWrites).toBe(1)
    } finally {
      peerClient.disconnect()
    }
  })
})
