import { setTimeout as sleep } from 'node:timers/promises'
import {
  CacheStack,
  InvalidKeyError,
  InvalidOptionError,
  InvalidValueError,
  LayerCacheError,
  LayerUnavailableError,
  type SetOptions,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { startRedisServer } from '@layercache/test-utils'
import { type RedisTarget, useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { type Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import {
  compareSequences,
  FlushTimeoutError,
  QueueFullError,
  WriteBehind,
  type WriteBehindEntry,
  type WriteBehindEvents,
  type WriteBehindOptions,
} from '../src'

const redis = useRedisAndCluster()
const GROUP = 'layercache'
/** Every acknowledged write is on disk before Redis answers, so even SIGKILL loses none. */
const AOF = ['--appendonly', 'yes', '--appendfsync', 'always']

// Servers and instances a test started; afterEach ends them even when the test failed half-way.
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
})

type Options = Partial<WriteBehindOptions<unknown>>

function stackOn(client: Redis | Cluster, prefix: string): CacheStack {
  return new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix })])
}

/** A queue on `target` with a recording writer; `db` is what the "database" holds afterwards. */
function setup(options: Options = {}, target: RedisTarget = 'standalone') {
  const client = options.client ?? redis.client(target)
  const cache = options.cache ?? stackOn(client, redis.prefix(target, 'cache'))
  const db = new Map<string, unknown>()
  const seen: WriteBehindEntry[] = []
  const calls: WriteBehindEntry[][] = []
  const queue = new WriteBehind<unknown>({
    cache,
    client,
    queue: redis.prefix(target, 'queue'),
    writer: async (entries) => {
      calls.push([...entries])
      for (const entry of entries) {
        seen.push(entry)
        db.set(entry.key, entry.value)
      }
    },
    pollIntervalMs: 5,
    ...options,
  })
  cleanups.push(() => queue.close({ drain: false }))
  return { cache, client, db, seen, calls, queue }
}

/** Another instance on the same queue (same cache namespace unless given). */
function sibling(of: WriteBehind<unknown>, client: Redis | Cluster, options: Options) {
  const seen: WriteBehindEntry[] = []
  const queue = new WriteBehind<unknown>({
    cache: new CacheStack([new MemoryLayer()]),
    client,
    queue: of.queue,
    pollIntervalMs: 5,
    writer: async (entries) => {
      seen.push(...entries)
    },
    ...options,
  })
  cleanups.push(() => queue.close({ drain: false }))
  return { queue, seen }
}

function collect<K extends keyof WriteBehindEvents<unknown>>(queue: WriteBehind<unknown>, name: K) {
  const events: WriteBehindEvents<unknown>[K][] = []
  queue.on(name, (event) => events.push(event))
  return events
}

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await sleep(5)
  }
}

function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { open, opened }
}

/** How a promise settled, or 'pending' if it had not after `ms` (a liveness bound, not a timing check). */
async function settle<T>(promise: Promise<T>, ms: number) {
  const timeout = Symbol('pending')
  try {
    const value = await Promise.race([promise, sleep(ms).then(() => timeout)])
    return value === timeout ? ('pending' as const) : { value: value as T }
  } catch (error) {
    return { error }
  }
}

/** A redis-server of the test's own (for restarts and kills) and a client for it. */
async function ownRedis(args: string[] = []) {
  const server = await startRedisServer({ args })
  const client = new Redis(server.url)
  client.on('error', () => {}) // reconnection noise while the server is down
  cleanups.push(async () => {
    client.disconnect()
    await server.stop()
  })
  return { server, client }
}

async function streamState(client: Redis | Cluster, queue: WriteBehind<unknown>) {
  const length = await client.xlen(queue.streamKey)
  const [pending] = (await client.xpending(queue.streamKey, GROUP)) as [number]
  return { length, pending }
}

function counts(ids: readonly string[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const id of ids) out.set(id, (out.get(id) ?? 0) + 1)
  return out
}

/** Resolves once the client is connected again (write() refuses while it reconnects). */
function connected(client: { status: string; once(event: 'ready', listener: () => void): unknown }) {
  return new Promise<void>((resolve) => {
    if (client.status === 'ready') resolve()
    else client.once('ready', () => resolve())
  })
}

async function writeMany(queue: WriteBehind<unknown>, count: number, from = 0, keys = count) {
  const ids: string[] = []
  for (let i = from; i < from + count; i++) ids.push((await queue.write(`k${i % keys}`, { n: i })).id)
  return ids
}

describe('WriteBehind: Redis restarts and crashes', () => {
  it('queued writes survive a Redis restart (AOF) and drain afterwards, each exactly once', async () => {
    const { server, client } = await ownRedis(AOF)
    const { queue, seen, db } = setup({ client, cache: new CacheStack([new MemoryLayer()]) })
    const ids = await writeMany(queue, 30, 0, 10)
    expect(await client.xlen(queue.streamKey)).toBe(30)
    await server.restart()
    await queue.flush(15_000)
    expect(seen.map((entry) => entry.id)).toEqual(ids) // in queue order, none twice
    for (let k = 0; k < 10; k++) expect(db.get(`k${k}`)).toEqual({ n: 20 + k })
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })

  it('acknowledged writes survive a Redis crash (SIGKILL) with appendfsync always', async () => {
    const { server, client } = await ownRedis(AOF)
    const { queue, seen } = setup({ client, cache: new CacheStack([new MemoryLayer()]) })
    const ids = await writeMany(queue, 20)
    await server.kill()
    await server.restart()
    await queue.flush(15_000)
    expect(seen.map((entry) => entry.id)).toEqual(ids)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })

  it('a batch held by the writer while Redis restarts is acknowledged afterwards; nothing is lost', async () => {
    const { server, client } = await ownRedis(AOF)
    const held = gate()
    const release = gate()
    let firstBatch: string[] | undefined
    const delivered: string[] = []
    const { queue } = setup({
      client,
      cache: new CacheStack([new MemoryLayer()]),
      batchSize: 5,
      writer: async (entries) => {
        if (firstBatch === undefined) {
          firstBatch = entries.map((entry) => entry.id)
          held.open()
          await release.opened
        }
        delivered.push(...entries.map((entry) => entry.id))
      },
    })
    const before = await writeMany(queue, 20)
    queue.start()
    await held.opened
    await server.restart()
    release.open()
    await connected(client) // write() refuses while the client reconnects (it would replay late)
    const after = await writeMany(queue, 10, 20)
    await queue.flush(15_000)
    const all = [...before, ...after]
    expect(new Set(delivered)).toEqual(new Set(all))
    // At least once: only the batch in flight during the restart may have been delivered twice.
    for (const [id, times] of counts(delivered)) if (!firstBatch!.includes(id)) expect(times, id).toBe(1)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })

  it('with Redis down, write() rejects with LayerUnavailableError within commandTimeout and caches nothing', async () => {
    const { server, client } = await ownRedis()
    // The cache lives on the healthy shared Redis: only the queue's Redis is down.
    const shared = redis.client('standalone')
    const { queue, cache } = setup({
      client,
      cache: stackOn(shared, redis.prefix('standalone', 'cache')),
      commandTimeout: 300,
    })
    await queue.write('up', 1)
    await cache.set('k', 'old')
    await server.kill()

    const outcome = await settle(queue.write('k', 'new'), 5_000)
    expect(outcome).not.toBe('pending')
    expect(outcome).toMatchObject({ error: expect.any(LayerUnavailableError) })
    expect((outcome as { error: LayerUnavailableError }).error.code).toBe('LAYER_UNAVAILABLE')
    // The cache never holds the new value, and not the old one either when the enqueue's outcome is
    // unknown (the command may have left before the connection dropped): the next read loads.
    expect([undefined, 'old']).toContain(await cache.get('k'))
    expect(await cache.get('k')).not.toBe('new')
    await expect(queue.write('fresh', 1)).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(await cache.get('fresh')).toBeUndefined()
    expect(queue.stats().queued).toBe(1)

    await expect(queue.flush(1_000)).rejects.toBeInstanceOf(LayerUnavailableError)
    const errors = collect(queue, 'error')
    queue.start()
    await waitUntil(() => errors.length > 0, 'the consumer reports an error')
    expect(errors[0]).toMatchObject({ operation: 'consume', error: expect.any(LayerUnavailableError) })
  })

  it('after Redis lost its data (restart without persistence), a running consumer recreates its group', async () => {
    const { server, client } = await ownRedis()
    const { queue, seen } = setup({ client, cache: new CacheStack([new MemoryLayer()]) })
    queue.start()
    await queue.write('a', 1)
    await queue.flush(5_000)
    await server.kill()
    await server.restart() // empty: the stream and its group are gone
    await connected(client)
    const { id } = await queue.write('b', 2)
    await queue.flush(5_000)
    expect(seen.map((entry) => entry.id)).toContain(id)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })
})

describe('WriteBehind: writer failures', () => {
  it('retries a failing batch with doubling delays, then writes each entry once', async () => {
    let failuresLeft = 2
    const attempts: number[][] = []
    const written: WriteBehindEntry[] = []
    const { queue, cache, client } = setup({
      retryDelayMs: 5,
      batchSize: 10,
      writer: async (entries) => {
        attempts.push(entries.map((entry) => entry.attempt))
        if (failuresLeft-- > 0) throw new Error(`db busy ${failuresLeft}`)
        written.push(...entries)
      },
    })
    const retries = collect(queue, 'retry')
    const ids = await writeMany(queue, 3)
    queue.start()
    await waitUntil(() => written.length === 3, 'the batch is written')
    await queue.flush(5_000)
    expect(attempts).toEqual([
      [1, 1, 1],
      [2, 2, 2],
      [3, 3, 3],
    ])
    expect(written.map((entry) => entry.id)).toEqual(ids)
    expect(retries.map((event) => event.retryInMs)).toEqual([5, 10])
    expect(retries.map((event) => (event.error as Error).message)).toEqual(['db busy 1', 'db busy 0'])
    expect(retries[0]!.entries.map((entry) => entry.id)).toEqual(ids)
    expect(queue.stats()).toMatchObject({ written: 3, retries: 6, deadLettered: 0, batches: 1, queued: 3 })
    expect(await queue.deadLetters()).toEqual([])
    expect(await cache.get('k2')).toEqual({ n: 2 }) // written values stay cached
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })

  it('dead-letters after maxAttempts with the attempt count, the error text and the entry; the cache lets go', async () => {
    const { queue, cache, client } = setup({
      maxAttempts: 3,
      retryDelayMs: 5,
      writer: async () => {
        throw new Error('duplicate key value violates unique constraint "orders_pkey"')
      },
    })
    const deadEvents = collect(queue, 'deadLetter')
    const retries = collect(queue, 'retry')
    const first = await queue.write('order:1', { total: 10 })
    const second = await queue.write('order:2', [1, 'two', null])
    expect(await cache.get('order:1')).toEqual({ total: 10 })
    await queue.flush(5_000)

    const dead = await queue.deadLetters()
    expect(dead).toHaveLength(2)
    expect(dead[0]).toMatchObject({
      id: first.id,
      key: 'order:1',
      value: { total: 10 },
      attempt: 3,
      error: 'duplicate key value violates unique constraint "orders_pkey"',
    })
    expect(dead[1]).toMatchObject({ id: second.id, key: 'order:2', value: [1, 'two', null], attempt: 3 })
    expect(compareSequences(dead[0]!.sequence, dead[1]!.sequence)).toBeLessThan(0)
    expect(dead[0]!.queuedAt).toBeGreaterThan(0)
    expect(deadEvents.map((event) => [event.entry.id, event.entry.attempt])).toEqual([
      [first.id, 3],
      [second.id, 3],
    ])
    expect(retries.map((event) => event.entries.map((entry) => entry.attempt))).toEqual([
      [1, 1],
      [2, 2],
    ])
    expect(queue.stats()).toMatchObject({ deadLettered: 2, retries: 4, written: 0 })
    // The database will never get these values: the cache must not keep serving them.
    expect(await cache.get('order:1')).toBeUndefined()
    expect(await cache.get('order:2')).toBeUndefined()
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
    expect(await queue.deadLetters(1)).toHaveLength(1)
  })

  it('caps the retry delay at maxRetryDelayMs and records non-Error failures as text (running consumer)', async () => {
    const { queue } = setup({
      maxAttempts: 4,
      retryDelayMs: 5,
      maxRetryDelayMs: 8,
      writer: async () => {
        throw 'connection refused'
      },
    })
    const retries = collect(queue, 'retry')
    const deadEvents = collect(queue, 'deadLetter')
    await queue.write('k', 1)
    queue.start()
    await waitUntil(() => deadEvents.length === 1, 'the entry is dead-lettered')
    expect(retries.map((event) => event.retryInMs)).toEqual([5, 8, 8])
    expect(deadEvents[0]!.error).toBe('connection refused')
    expect(await queue.deadLetters()).toMatchObject([
      { key: 'k', value: 1, attempt: 4, error: 'connection refused' },
    ])
  })

  it('flush() rejects with FlushTimeoutError while the writer keeps failing', async () => {
    const { queue } = setup({
      maxAttempts: 1_000,
      retryDelayMs: 1,
      writer: async () => {
        throw new Error('down')
      },
    })
    await queue.write('k', 1)
    const outcome = await settle(queue.flush(200), 10_000)
    expect(outcome).toMatchObject({ error: expect.any(FlushTimeoutError) })
    expect((outcome as { error: FlushTimeoutError }).error).toMatchObject({ code: 'FLUSH_TIMEOUT' })
    expect((outcome as { error: Error }).error.message).toContain('1 entries')
  })
})

/** Redis refuses writes that need memory once full, as the docs recommend for the queue's Redis. */
const NOEVICTION = ['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction']

/** Fills Redis past its maxmemory in one command (SETRANGE allocates the whole string); empty() frees it. */
function filler(client: Redis) {
  return {
    fill: () => client.setrange('filler', 16 * 1024 * 1024, 'x'),
    empty: () => client.del('filler'),
  }
}

describe('WriteBehind: a full Redis (maxmemory, noeviction)', () => {
  it('an entry whose dead letter Redis refuses stays queued, with no deadLetter event; it moves once Redis has room', async () => {
    const { client } = await ownRedis(NOEVICTION)
    const full = filler(client)
    let filled = false
    const { queue, cache } = setup({
      client,
      cache: stackOn(client, 'cache:'),
      maxAttempts: 1,
      writer: async () => {
        // Redis fills up while the database fails: the entries must go to the dead-letter stream.
        if (!filled) {
          filled = true
          await full.fill()
        }
        throw new Error('database down')
      },
    })
    const deadEvents = collect(queue, 'deadLetter')
    const ids = await writeMany(queue, 5)

    const outcome = await settle(queue.flush(5_000), 10_000)
    expect(outcome).toMatchObject({ error: expect.any(LayerUnavailableError) })
    expect((outcome as { error: Error }).error.message).toContain('OOM')
    expect(deadEvents).toEqual([])
    expect(queue.stats().deadLettered).toBe(0)
    expect(await client.xlen(queue.deadLetterKey)).toBe(0)
    // Nothing left the queue: every entry is still there, pending for another delivery.
    expect(await streamState(client, queue)).toEqual({ length: 5, pending: 5 })
    // Still on its way to the database, so the cache keeps serving it.
    expect(await cache.get('k0')).toEqual({ n: 0 })
    // A new write is refused while Redis is full: nothing queued, and the cache does not take it.
    await expect(queue.write('k0', { n: 99 })).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(await cache.get('k0')).toEqual({ n: 0 })
    expect(await client.xlen(queue.streamKey)).toBe(5)

    await full.empty()
    await queue.flush(5_000)
    expect(deadEvents.map((event) => event.entry.id)).toEqual(ids)
    expect((await queue.deadLetters()).map((dead) => [dead.id, dead.error])).toEqual(
      ids.map((id) => [id, 'database down']),
    )
    expect(queue.stats().deadLettered).toBe(5)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
    for (let i = 0; i < 5; i++) expect(await cache.get(`k${i}`)).toBeUndefined()
  })

  it('good entries are written while Redis is full; an unreadable one it cannot dead-letter waits, and the consumer says why', async () => {
    const { client } = await ownRedis(NOEVICTION)
    const full = filler(client)
    const { queue, db } = setup({
      client,
      cache: new CacheStack([new MemoryLayer()]),
      retryDelayMs: 5,
      maxRetryDelayMs: 20,
    })
    await queue.flush(1_000) // creates the consumer group while Redis has room
    await client.xadd(queue.streamKey, '*', 'id', 'bad', 'key', 'bad', 'value', '{not json', 'at', '0')
    await queue.write('good', 1)
    await full.fill()
    const errors = collect(queue, 'error')
    const deadEvents = collect(queue, 'deadLetter')
    const written = collect(queue, 'flush')

    queue.start()
    const refused = () => errors.find((event) => event.operation === 'consume')
    await waitUntil(() => refused() !== undefined && written.length > 0, 'the dead letter is refused')
    expect(refused()!.error).toBeInstanceOf(LayerUnavailableError)
    expect(String((refused()!.error as Error).message)).toContain('OOM')
    expect(db.get('good')).toBe(1) // acknowledging needs no memory: good writes go on
    expect(deadEvents).toEqual([])
    expect(queue.stats()).toMatchObject({ written: 1, deadLettered: 0 })
    const left = (await client.xrange(queue.streamKey, '-', '+')).map(([, fields]) => fields[1])
    expect(left).toEqual(['bad'])

    await full.empty()
    await waitUntil(() => deadEvents.length === 1, 'the unreadable entry is dead-lettered')
    expect(deadEvents[0]!.entry).toMatchObject({ id: 'bad', key: 'bad' })
    expect(await client.xlen(queue.deadLetterKey)).toBe(1)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })
})

describe('WriteBehind: back-pressure', () => {
  it('a full queue makes write() wait, then fail with QueueFullError; the value is not cached', async () => {
    const { queue, cache, client } = setup({ maxQueueLength: 3, enqueueTimeoutMs: 300 })
    await writeMany(queue, 3)
    const outcome = await settle(queue.write('over', 'flow'), 10_000)
    expect(outcome).toMatchObject({ error: expect.any(QueueFullError) })
    const error = (outcome as { error: QueueFullError }).error
    expect(error).toBeInstanceOf(LayerCacheError)
    expect(error.code).toBe('QUEUE_FULL')
    expect(error.message).toContain('3 entries')
    expect(await cache.get('over')).toBeUndefined()
    expect(await client.xlen(queue.streamKey)).toBe(3)
    expect(queue.stats()).toMatchObject({ queued: 3, depth: 3 })
  })

  it('a waiting write() goes through once a consumer frees room', async () => {
    const { queue, cache, client } = setup({ maxQueueLength: 2, enqueueTimeoutMs: 15_000 })
    await writeMany(queue, 2)
    let settled = false
    const waiting = queue.write('late', 'value').finally(() => {
      settled = true
    })
    // Time must pass: nothing is to happen (the write keeps retrying a full queue every 20 ms), so the
    // test watches a window; it can only pass wrongly, never fail wrongly, on a slow machine.
    await sleep(200)
    expect(settled).toBe(false)
    expect(await cache.get('late')).toBeUndefined()
    expect(await client.xlen(queue.streamKey)).toBe(2)

    const consumer = sibling(queue, client, {})
    consumer.queue.start()
    const { id } = await waiting
    expect(await cache.get('late')).toBe('value')
    await consumer.queue.flush(5_000)
    expect(consumer.seen.map((entry) => entry.key)).toEqual(['k0', 'k1', 'late'])
    expect(consumer.seen[2]!.id).toBe(id)
  })
})

describe('WriteBehind: coalescing', () => {
  it('hands the writer only the newest write of a key in a batch and counts the others', async () => {
    const { queue, calls, cache, client } = setup({ coalesce: true, batchSize: 10 })
    await queue.write('k', 1)
    await queue.write('other', 'a')
    await queue.write('k', 2)
    const newest = await queue.write('k', 3)
    await queue.flush(5_000)
    expect(calls).toHaveLength(1)
    const batch = [...calls[0]!].sort((a, b) => a.key.localeCompare(b.key))
    expect(batch.map((entry) => [entry.key, entry.value])).toEqual([
      ['k', 3],
      ['other', 'a'],
    ])
    expect(batch[0]!.id).toBe(newest.id)
    expect(queue.stats()).toMatchObject({ coalesced: 2, written: 2, queued: 4 })
    expect(await cache.get('k')).toBe(3)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })

  it('coalesces within a batch only, keeping queue order across batches', async () => {
    const { queue, calls } = setup({ coalesce: true, batchSize: 2 })
    for (let i = 1; i <= 4; i++) await queue.write('k', i)
    await queue.flush(5_000)
    expect(calls.map((batch) => batch.map((entry) => entry.value))).toEqual([[2], [4]])
    expect(queue.stats().coalesced).toBe(2)
  })

  it('without coalesce every write reaches the writer', async () => {
    const { queue, seen } = setup({ batchSize: 10 })
    for (let i = 1; i <= 3; i++) await queue.write('k', i)
    await queue.flush(5_000)
    expect(seen.map((entry) => entry.value)).toEqual([1, 2, 3])
    expect(queue.stats().coalesced).toBe(0)
  })

  it('counts a superseded write once even when its batch is retried', async () => {
    let failuresLeft = 1
    const { queue, calls } = setup({
      coalesce: true,
      batchSize: 10,
      retryDelayMs: 1,
      writer: async (entries) => {
        calls.push([...entries])
        if (failuresLeft-- > 0) throw new Error('once')
      },
    })
    for (let i = 1; i <= 3; i++) await queue.write('k', i)
    await queue.flush(5_000)
    expect(calls.map((batch) => batch.map((entry) => entry.value))).toEqual([[3], [3]])
    expect(queue.stats()).toMatchObject({ coalesced: 2, written: 1 })
  })
})

describe('WriteBehind: shutdown', () => {
  it('close({ drain: true }) writes everything first and then stops consuming', async () => {
    const { queue, seen, client } = setup({ batchSize: 7 })
    queue.start()
    const ids = await writeMany(queue, 40)
    await queue.close({ drain: true })
    expect(seen.map((entry) => entry.id)).toEqual(ids)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
    // Stopped: a later write (from this or any instance) is left for the other consumers.
    await queue.write('after', 1)
    // Time must pass: a consumer still running would poll (every 50 ms) within this window.
    await sleep(100)
    expect(seen).toHaveLength(40)
    expect(await client.xlen(queue.streamKey)).toBe(1)
  })

  it('close({ drain: false }) leaves the entries for another instance, which takes them over after claimAfterMs', async () => {
    let calls = 0
    const { queue, client } = setup({
      batchSize: 4,
      retryDelayMs: 60_000,
      maxAttempts: 10,
      writer: async () => {
        calls++
        throw new Error('database unreachable')
      },
    })
    const ids = await writeMany(queue, 10)
    queue.start()
    await waitUntil(() => queue.stats().retries >= 4, 'a batch failed and waits for its retry')
    await queue.close({ drain: false })
    const callsAtClose = calls
    const { pending } = await streamState(client, queue)
    expect(pending).toBeGreaterThanOrEqual(4)
    expect(await client.xlen(queue.streamKey)).toBe(10)

    const other = sibling(queue, client, { claimAfterMs: 200 })
    const claims = collect(other.queue, 'claim')
    await other.queue.flush(10_000)
    expect(other.seen.map((entry) => entry.id).sort()).toEqual([...ids].sort())
    expect(other.queue.stats().claimed).toBe(pending)
    expect(claims.reduce((sum, event) => sum + event.count, 0)).toBe(pending)
    const claimed = other.seen.filter((entry) => entry.attempt > 1)
    expect(claimed).toHaveLength(pending)
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
    expect(calls).toBe(callsAtClose) // the closed instance did not write again
  })

  it('close() that cannot drain in time rejects with FlushTimeoutError and still stops consuming', async () => {
    let calls = 0
    const { queue } = setup({
      maxAttempts: 1_000,
      retryDelayMs: 1,
      maxRetryDelayMs: 2,
      writer: async () => {
        calls++
        throw new Error('down')
      },
    })
    queue.start()
    await queue.write('k', 1)
    await expect(queue.close({ drain: true, timeoutMs: 200 })).rejects.toBeInstanceOf(FlushTimeoutError)
    // close() settles only once a round that had started finished: from here the writer is not called.
    const callsAfterClose = calls
    await sleep(300) // a running consumer retries every 2 ms: it would call the writer again meanwhile
    expect(calls).toBe(callsAfterClose)
  })
})

describe('WriteBehind: several consumers', () => {
  it('two consumers of one group never both write an entry in normal operation', async () => {
    const { queue: producer, client } = setup({ writer: async () => {} })
    const slow = async () => {
      await new Promise((resolve) => setImmediate(resolve))
    }
    const written: { by: string; id: string }[] = []
    const consumers = ['a', 'b'].map((name) => {
      const { queue } = sibling(producer, client, {
        consumer: `consumer-${name}`,
        batchSize: 7,
        pollIntervalMs: 1,
        writer: async (entries) => {
          await slow()
          for (const entry of entries) written.push({ by: name, id: entry.id })
        },
      })
      return queue.start()
    })
    const ids: string[] = []
    for (let round = 0; round < 15; round++) {
      const batch = await Promise.all(
        Array.from({ length: 20 }, (_, i) => producer.write(`k${round}-${i}`, { round, i })),
      )
      ids.push(...batch.map((write) => write.id))
    }
    await waitUntil(() => written.length >= ids.length, 'every entry is written')
    await Promise.all(consumers.map((consumer) => consumer.close({ drain: true })))
    expect(written).toHaveLength(ids.length)
    expect(new Set(written.map((write) => write.id))).toEqual(new Set(ids))
    const stats = consumers.map((consumer) => consumer.stats())
    expect(stats.reduce((sum, s) => sum + s.written, 0)).toBe(ids.length)
    expect(stats.map((s) => [s.claimed, s.retries])).toEqual([
      [0, 0],
      [0, 0],
    ])
    expect(await streamState(client, producer)).toEqual({ length: 0, pending: 0 })
  })
})

describe('WriteBehind: bad input', () => {
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  it.each([
    ['an undefined value', 'k', undefined, InvalidValueError],
    ['a BigInt', 'k', 10n, InvalidValueError],
    ['a BigInt inside an object', 'k', { total: 10n }, InvalidValueError],
    ['a cyclic object', 'k', cyclic, InvalidValueError],
    [
      'a throwing toJSON',
      'k',
      {
        toJSON: () => {
          throw new Error('no')
        },
      },
      InvalidValueError,
    ],
    ['an empty key', '', 1, InvalidKeyError],
    ['a non-string key', 42, 1, InvalidKeyError],
    ['a key with a control character', 'a\nb', 1, InvalidKeyError],
  ] as const)('%s: a typed error, nothing queued or cached', async (_, key, value, type) => {
    const { queue, cache, client, seen } = setup()
    await expect(queue.write(key as string, value)).rejects.toBeInstanceOf(type)
    expect(await client.exists(queue.streamKey)).toBe(0)
    expect(queue.stats().queued).toBe(0)
    if (typeof key === 'string' && key !== '' && !key.includes('\n'))
      expect(await cache.get(key)).toBeUndefined()
    await queue.flush(1_000)
    expect(seen).toEqual([])
  })

  const notJson = [
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['an object whose toJSON gives undefined', { toJSON: () => undefined }],
  ] as const
  it.each(notJson)(
    '%s (JSON has no value for it): InvalidValueError, nothing queued or cached',
    async (_, value) => {
      const { queue, cache, client } = setup()
      await expect(queue.write('poison', value)).rejects.toBeInstanceOf(InvalidValueError)
      expect(await client.exists(queue.streamKey)).toBe(0)
      expect(await cache.get('poison')).toBeUndefined()
    },
  )

  it.each(notJson)('%s refused by write() does not block the queue', async (_, value) => {
    const { queue, seen } = setup()
    await queue.write('poison', value).catch(() => {})
    const { id } = await queue.write('fine', 1)
    await queue.flush(2_000)
    expect(seen.map((entry) => entry.id)).toEqual([id])
  })

  it.each([
    ['a negative ttl', { ttl: -1 }],
    ['an unknown option', { ttl_ms: 5 }],
    ['bad tags', { tags: 'orders' }],
  ] as const)('write() with %s: a typed error, nothing queued or cached', async (_, options) => {
    const { queue, cache, client } = setup()
    await expect(queue.write('k', 1, options as unknown as SetOptions)).rejects.toBeInstanceOf(
      LayerCacheError,
    )
    expect(await cache.get('k')).toBeUndefined()
    expect(await client.exists(queue.streamKey)).toBe(0)
    expect(queue.stats().queued).toBe(0)
  })

  const valid = () => ({
    cache: new CacheStack([new MemoryLayer()]),
    client: redis.client('standalone'),
    queue: 'valid',
    writer: async () => {},
  })
  it.each([
    ['an unknown option', { batchsize: 10 }, InvalidOptionError],
    ['batchSize 0', { batchSize: 0 }, InvalidOptionError],
    ['batchSize -1', { batchSize: -1 }, InvalidOptionError],
    ['batchSize 1.5', { batchSize: 1.5 }, InvalidOptionError],
    ['batchSize as a string', { batchSize: '10' }, InvalidOptionError],
    ['pollIntervalMs 0', { pollIntervalMs: 0 }, InvalidOptionError],
    ['maxAttempts 0', { maxAttempts: 0 }, InvalidOptionError],
    ['retryDelayMs NaN', { retryDelayMs: Number.NaN }, InvalidOptionError],
    ['maxRetryDelayMs Infinity', { maxRetryDelayMs: Number.POSITIVE_INFINITY }, InvalidOptionError],
    ['maxQueueLength 0', { maxQueueLength: 0 }, InvalidOptionError],
    ['enqueueTimeoutMs -5', { enqueueTimeoutMs: -5 }, InvalidOptionError],
    ['claimAfterMs 0', { claimAfterMs: 0 }, InvalidOptionError],
    ['commandTimeout 0', { commandTimeout: 0 }, InvalidOptionError],
    ['coalesce as a string', { coalesce: 'yes' }, InvalidOptionError],
    ['a queue name with braces', { queue: 'orders{1}' }, InvalidOptionError],
    ['a queue name with one brace', { queue: 'orders}' }, InvalidOptionError],
    ['an empty queue name', { queue: '' }, InvalidKeyError],
    ['no queue name', { queue: undefined }, InvalidKeyError],
    ['a writer that is not a function', { writer: 'insert' }, InvalidOptionError],
    ['no writer', { writer: undefined }, InvalidOptionError],
    ['a cache that is not a CacheStack', { cache: {} }, InvalidOptionError],
    ['a client that is not ioredis', { client: { get() {} } }, InvalidOptionError],
    ['an empty consumer name', { consumer: '' }, InvalidOptionError],
    ['a consumer name that is not a string', { consumer: 7 }, InvalidOptionError],
  ] as const)('the constructor refuses %s', (_, override, type) => {
    expect(
      () => new WriteBehind({ ...valid(), ...override } as unknown as WriteBehindOptions<unknown>),
    ).toThrow(type)
  })

  it('the constructor refuses options that are not an object', () => {
    expect(() => new WriteBehind(null as unknown as WriteBehindOptions<unknown>)).toThrow(InvalidOptionError)
    expect(() => new WriteBehind(undefined as unknown as WriteBehindOptions<unknown>)).toThrow(
      InvalidOptionError,
    )
  })

  it('accepts the valid options and names the Redis keys after the queue, in one hash slot', () => {
    const queue = new WriteBehind({ ...valid(), queue: 'orders:eu', consumer: 'me' })
    expect(queue.streamKey).toBe('lc:wb:{orders:eu}')
    expect(queue.deadLetterKey).toBe('lc:wb:{orders:eu}:dead')
    expect(queue.consumer).toBe('me')
    expect(new WriteBehind(valid()).consumer).not.toBe(new WriteBehind(valid()).consumer)
  })
})

describe('WriteBehind: entries, events and stats', () => {
  it('hands entries in queue order with their id, sequence and attempt, in batches of batchSize', async () => {
    const { queue, calls, cache } = setup({ batchSize: 10 })
    const flushes = collect(queue, 'flush')
    const ids = await writeMany(queue, 25)
    expect(await cache.get('k24')).toEqual({ n: 24 }) // cached at once, before any database write
    await queue.flush(5_000)
    expect(calls.map((batch) => batch.length)).toEqual([10, 10, 5])
    const entries = calls.flat()
    expect(entries.map((entry) => entry.id)).toEqual(ids)
    expect(entries.map((entry) => entry.attempt)).toEqual(ids.map(() => 1))
    for (let i = 1; i < entries.length; i++) {
      expect(compareSequences(entries[i - 1]!.sequence, entries[i]!.sequence)).toBeLessThan(0)
    }
    expect(entries[3]).toMatchObject({ key: 'k3', value: { n: 3 } })
    expect(entries.every((entry) => Number.isFinite(entry.queuedAt) && entry.queuedAt > 0)).toBe(true)
    expect(flushes.map((event) => event.count)).toEqual([10, 10, 5])
    expect(queue.stats()).toMatchObject({ queued: 25, written: 25, batches: 3, depth: 0, coalesced: 0 })
    expect(queue.stats().lastFlushMs).toEqual(expect.any(Number))
  })

  it('compareSequences orders stream ids numerically, not as text', () => {
    expect(compareSequences('1-2', '1-10')).toBeLessThan(0)
    expect(compareSequences('9-0', '10-0')).toBeLessThan(0)
    expect(compareSequences('10-0', '9-99')).toBeGreaterThan(0)
    expect(compareSequences('1700000000000-3', '1700000000000-3')).toBe(0)
  })

  it('write() passes its options to the cache (ttl, tags)', async () => {
    const { queue, cache } = setup()
    await queue.write('tagged', 1, { tags: ['orders'], ttl: 60_000 })
    expect(await cache.get('tagged')).toBe(1)
    await cache.invalidateByTag('orders')
    expect(await cache.get('tagged')).toBeUndefined()
  })

  it('a throwing listener does not stop the queue; unsubscribing stops the events', async () => {
    const { queue, seen } = setup()
    queue.on('flush', () => {
      throw new Error('listener bug')
    })
    const flushes: number[] = []
    const off = queue.on('flush', (event) => flushes.push(event.count))
    await queue.write('a', 1)
    await queue.flush(5_000)
    off()
    await queue.write('b', 2)
    await queue.flush(5_000)
    expect(seen.map((entry) => entry.key)).toEqual(['a', 'b'])
    expect(flushes).toEqual([1])
  })
})

describe.each(['standalone', 'cluster'] as const)('WriteBehind on %s Redis', (target) => {
  it('writes through the queue: cache at once, database once per write, queue empty', async () => {
    const { queue, cache, seen, db, client } = setup({ batchSize: 16 }, target)
    queue.start()
    const ids = await writeMany(queue, 50, 0, 20)
    for (let k = 0; k < 20; k++) expect(await cache.get(`k${k}`)).toEqual({ n: k < 10 ? 40 + k : 20 + k })
    await queue.flush(10_000)
    expect(seen.map((entry) => entry.id)).toEqual(ids)
    for (let k = 0; k < 20; k++) expect(db.get(`k${k}`)).toEqual({ n: k < 10 ? 40 + k : 20 + k })
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
    expect(await queue.deadLetters()).toEqual([])
    await queue.close()
  })

  it('dead-letters and takes over pending entries', async () => {
    const { queue, client } = setup(
      {
        maxAttempts: 2,
        retryDelayMs: 1,
        writer: async () => {
          throw new Error('rejected')
        },
      },
      target,
    )
    await queue.write('dead', 1)
    await queue.flush(5_000)
    expect(await queue.deadLetters()).toMatchObject([
      { key: 'dead', value: 1, attempt: 2, error: 'rejected' },
    ])

    // An entry left pending by a stopped consumer is taken over by another one.
    const stuck = sibling(queue, client, {
      maxAttempts: 5,
      retryDelayMs: 60_000,
      writer: async () => {
        throw new Error('later')
      },
    })
    const { id } = await queue.write('moved', 2)
    stuck.queue.start()
    await waitUntil(() => stuck.queue.stats().retries > 0, 'the entry is pending')
    await stuck.queue.close({ drain: false })
    const other = sibling(queue, client, { claimAfterMs: 100 })
    await other.queue.flush(5_000)
    expect(other.seen).toMatchObject([{ id, key: 'moved', value: 2, attempt: 2 }])
    expect(await streamState(client, queue)).toEqual({ length: 0, pending: 0 })
  })
})

describe('WriteBehind: a cache that fails while a write is queued', () => {
  it('a write whose cache update and clean-up both fail rejects and says so with an error event', async () => {
    const cacheRedis = await ownRedis()
    const { queue } = setup({ cache: stackOn(cacheRedis.client, 'gone:') })
    const errors = collect(queue, 'error')
    await cacheRedis.server.stop()

    // Queued for the database, but the cache could neither take the value nor drop the old one: it may
    // serve the old value until its TTL, which the application must hear about.
    await expect(queue.write('k', 1)).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(errors).toMatchObject([
      { operation: 'write cache delete', error: expect.any(LayerUnavailableError) },
    ])
    expect(queue.stats().queued).toBe(1)
  })
})
