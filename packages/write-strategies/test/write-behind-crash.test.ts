import { type ChildProcess, fork } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { WriteBehind, type WriteBehindEntry } from '../src'
import type { CrashWorkerConfig, CrashWorkerMessage } from './support/crash-worker'
import { connectPostgres, createWritesTable, PG_CONFIG } from './support/postgres'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../../..')
const WORKER = join(HERE, 'support/crash-worker.ts')
const MESSAGE_TIMEOUT_MS = 15_000

let redis: TestRedis
let client: Redis
let db: pg.Client
let run = 0
const children = new Set<ChildProcess>()
const tables: { drop(): Promise<void> }[] = []

const killChildren = () => {
  for (const child of children) child.kill('SIGKILL')
}

let postgresMissing: Error | undefined
beforeAll(async () => {
  process.on('exit', killChildren)
  redis = await getTestRedis()
  client = redis.createClient()
  // Kept, and thrown by every test: an unreachable PostgreSQL fails each of them, it never skips one.
  db = await connectPostgres().catch((error: Error) => {
    postgresMissing = error
    return undefined as unknown as pg.Client
  })
})
beforeEach(() => {
  if (postgresMissing) throw postgresMissing
})
afterEach(async () => {
  killChildren()
  await Promise.all(tables.splice(0).map((table) => table.drop()))
})
afterAll(async () => {
  killChildren()
  process.off('exit', killChildren)
  await db?.end()
  await redis?.close()
})

interface Worker {
  readonly child: ChildProcess
  /** Resolves with the first message of this type; rejects if the worker fails or dies first. */
  next<K extends CrashWorkerMessage['type']>(type: K): Promise<Extract<CrashWorkerMessage, { type: K }>>
  /** Resolves once `found` returns a value (checked on every message); rejects like next(). */
  waitFor<R>(found: () => R | undefined, what: string): Promise<R>
  readonly messages: CrashWorkerMessage[]
  /** SIGKILL; resolves once it is gone, with how it ended. */
  kill(): Promise<NodeJS.Signals | number | null>
}

function startWorker(config: CrashWorkerConfig): Worker {
  const child = fork(WORKER, [JSON.stringify(config)], {
    cwd: ROOT,
    execArgv: ['--conditions=@layercache/source', '--import', 'tsx'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  children.add(child)
  let output = ''
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const messages: CrashWorkerMessage[] = []
  const waiters = new Set<() => void>()
  child.on('message', (message: CrashWorkerMessage) => {
    messages.push(message)
    for (const wake of waiters) wake()
  })
  const waitFor = <R>(found: () => R | undefined, what: string): Promise<R> =>
    new Promise((resolveFound, reject) => {
      const done = (error?: Error, value?: R) => {
        clearTimeout(timer)
        waiters.delete(check)
        if (error) reject(error)
        else resolveFound(value as R)
      }
      const timer = setTimeout(
        () => done(new Error(`crash worker sent no ${what} in ${MESSAGE_TIMEOUT_MS} ms. Output:\n${output}`)),
        MESSAGE_TIMEOUT_MS,
      )
      const check = () => {
        const failure = messages.find((message) => message.type === 'failed')
        if (failure?.type === 'failed') {
          return done(new Error(`crash worker failed: ${failure.error}\nOutput:\n${output}`))
        }
        const value = found()
        if (value !== undefined) return done(undefined, value)
        if (child.exitCode !== null || child.signalCode !== null) {
          done(new Error(`crash worker exited before ${what}. Output:\n${output}`))
        }
      }
      waiters.add(check)
      check()
    })
  const exited = new Promise<NodeJS.Signals | number | null>((resolveExit) =>
    child.once('exit', (code, signal) => {
      children.delete(child)
      for (const wake of waiters) wake()
      resolveExit(signal ?? code)
    }),
  )
  return {
    child,
    messages,
    next(type) {
      return waitFor(
        () =>
          messages.find((message) => message.type === type) as
            | Extract<CrashWorkerMessage, { type: typeof type }>
            | undefined,
        `a "${type}" message`,
      )
    },
    waitFor,
    async kill() {
      child.kill('SIGKILL')
      return exited
    },
  }
}

function names() {
  run++
  return { queue: `${redis.keyPrefix}crash${run}`, consumer: `worker-${run}` }
}

interface Acked {
  readonly id: string
  readonly key: string
  readonly value: unknown
}

/** A WriteBehind in this process that inserts into `table` like the worker does, recording deliveries. */
function takeover(queue: string, table: string, claimAfterMs: number) {
  const deliveries: WriteBehindEntry[] = []
  const instance = new WriteBehind({
    cache: new CacheStack([new MemoryLayer()]),
    client,
    queue,
    consumer: `takeover-${run}`,
    batchSize: 20,
    pollIntervalMs: 10,
    claimAfterMs,
    writer: async (entries) => {
      for (const entry of entries) {
        deliveries.push(entry)
        await db.query(
          `INSERT INTO ${table} (idempotency_key, key, value, attempt) VALUES ($1, $2, $3, $4) ` +
            'ON CONFLICT (idempotency_key) DO NOTHING',
          [entry.id, entry.key, JSON.stringify(entry.value), entry.attempt],
        )
      }
    },
  })
  return { instance, deliveries }
}

async function expectQueueEmpty(queue: WriteBehind): Promise<void> {
  expect(await client.xlen(queue.streamKey)).toBe(0)
  const [pending] = (await client.xpending(queue.streamKey, 'layercache')) as [number]
  expect(pending).toBe(0)
  expect(await queue.deadLetters()).toEqual([])
}

/** Every acknowledged write is in the table exactly once, with its key and value. */
function expectExactlyOnce(
  rows: readonly { idempotency_key: string; key: string; value: unknown }[],
  acked: readonly Acked[],
) {
  expect(new Set(acked.map((write) => write.id)).size).toBe(acked.length)
  expect(rows).toHaveLength(acked.length)
  const byId = new Map(rows.map((row) => [row.idempotency_key, row]))
  for (const write of acked) {
    expect(byId.get(write.id), `row of ${write.id}`).toMatchObject({ key: write.key, value: write.value })
  }
}

describe('WriteBehind: a consumer SIGKILLed mid-batch', () => {
  it.each([
    { insertBeforeHang: 10, what: 'half of its batch inserted' },
    { insertBeforeHang: 20, what: 'all of its batch inserted but not acknowledged' },
  ])(
    'loses no acknowledged write and duplicates none ($what)',
    { timeout: 40_000 },
    async ({ insertBeforeHang }) => {
      const table = await createWritesTable(db)
      tables.push(table)
      const { queue, consumer } = names()
      const producer = new WriteBehind({
        cache: new CacheStack([new MemoryLayer()]),
        client,
        queue,
        consumer: `producer-${run}`,
        writer: async () => {
          throw new Error('the producer never consumes')
        },
      })
      const acked: Acked[] = []
      const write = async (i: number) => {
        const key = `order:${i % 10}`
        const value = { n: i, lines: [i, i + 1], note: `o'${i}"` }
        const { id } = await producer.write(key, value)
        acked.push({ id, key, value })
      }
      for (let i = 0; i < 50; i++) await write(i)

      const worker = startWorker({
        mode: 'consume',
        redisUrl: redis.url,
        queue,
        consumer,
        table: table.name,
        pg: PG_CONFIG,
        batchSize: 20,
        insertBeforeHang,
      })
      await worker.next('ready')
      const hung = await worker.next('hung')
      // The worker got the oldest 20 entries, in queue order, and committed some of them.
      expect(hung.batch).toEqual(acked.slice(0, 20).map((write) => write.id))
      expect(hung.inserted).toEqual(acked.slice(0, insertBeforeHang).map((write) => write.id))
      // Writes acknowledged while the worker hangs (and after it died) must survive too.
      for (let i = 50; i < 60; i++) await write(i)
      expect(await worker.kill()).toBe('SIGKILL')
      for (let i = 60; i < 65; i++) await write(i)
      expect((await table.rows()).map((row) => row.idempotency_key).sort()).toEqual([...hung.inserted].sort())

      const { instance, deliveries } = takeover(queue, table.name, 300)
      let claimEvents = 0
      instance.on('claim', ({ count }) => {
        claimEvents += count
      })
      await instance.flush(20_000)

      const rows = await table.rows()
      expectExactlyOnce(rows, acked)
      await expectQueueEmpty(instance)
      // The dead worker's batch was taken over (delivered again, so idempotency mattered) ...
      expect(instance.stats().claimed).toBe(20)
      expect(claimEvents).toBe(20)
      const redelivered = deliveries.filter((entry) => hung.batch.includes(entry.id))
      expect(redelivered.map((entry) => entry.id).sort()).toEqual([...hung.batch].sort())
      for (const entry of redelivered) expect(entry.attempt).toBeGreaterThanOrEqual(2)
      // ... the rows the dead worker committed kept its insert (attempt 1), the rest came from the takeover.
      const attempts = new Map(rows.map((row) => [row.idempotency_key, row.attempt]))
      for (const id of hung.inserted) expect(attempts.get(id)).toBe(1)
      for (const id of hung.batch.slice(insertBeforeHang)) expect(attempts.get(id)).toBeGreaterThanOrEqual(2)
      // Entries the dead worker never read were delivered once, on their first attempt.
      const fresh = deliveries.filter((entry) => !hung.batch.includes(entry.id))
      expect(fresh.map((entry) => entry.id).sort()).toEqual(
        acked
          .slice(20)
          .map((write) => write.id)
          .sort(),
      )
      for (const entry of fresh) expect(entry.attempt).toBe(1)
      await instance.close()
    },
  )

  it('a consumer that is not crashed keeps its batch: nothing is taken over before claimAfterMs', async () => {
    const table = await createWritesTable(db)
    tables.push(table)
    const { queue, consumer } = names()
    const producer = new WriteBehind({
      cache: new CacheStack([new MemoryLayer()]),
      client,
      queue,
      writer: async () => {},
    })
    for (let i = 0; i < 5; i++) await producer.write(`k${i}`, i)
    const worker = startWorker({
      mode: 'consume',
      redisUrl: redis.url,
      queue,
      consumer,
      table: table.name,
      pg: PG_CONFIG,
      batchSize: 5,
      insertBeforeHang: 0,
    })
    await worker.next('ready')
    const hung = await worker.next('hung')
    expect(hung.batch).toHaveLength(5)
    // A second instance with the default claimAfterMs (30 s) leaves the hanging worker's entries alone.
    const { instance, deliveries } = takeover(queue, table.name, 30_000)
    await expect(instance.flush(300)).rejects.toMatchObject({ code: 'FLUSH_TIMEOUT' })
    expect(deliveries).toEqual([])
    expect(instance.stats().claimed).toBe(0)
    expect(await worker.kill()).toBe('SIGKILL')
    await instance.close({ drain: false })
  })
})

describe('WriteBehind: a producer SIGKILLed while writing', () => {
  it('every write() that resolved before the crash reaches the database exactly once', async () => {
    const table = await createWritesTable(db)
    tables.push(table)
    const { queue, consumer } = names()
    const worker = startWorker({
      mode: 'produce',
      redisUrl: redis.url,
      queue,
      consumer,
      table: table.name,
      pg: PG_CONFIG,
      batchSize: 20,
      insertBeforeHang: 0,
    })
    await worker.next('ready')
    await worker.waitFor(
      () => (worker.messages.filter((message) => message.type === 'acked').length >= 40 ? true : undefined),
      '40 "acked" messages',
    )
    expect(await worker.kill()).toBe('SIGKILL')
    const acked = worker.messages.filter(
      (message): message is Extract<CrashWorkerMessage, { type: 'acked' }> => message.type === 'acked',
    )
    expect(acked.length).toBeGreaterThanOrEqual(40)

    const { instance } = takeover(queue, table.name, 300)
    await instance.flush(20_000)
    await expectQueueEmpty(instance)
    const rows = await table.rows()
    const ackedIds = new Set(acked.map((write) => write.id))
    // The one write() in flight at the kill may or may not have reached Redis; nothing else is extra.
    const extra = rows.filter((row) => !ackedIds.has(row.idempotency_key))
    expect(extra.length).toBeLessThanOrEqual(1)
    for (const row of extra) {
      expect(row).toMatchObject({
        key: `item:${acked.length % 7}`,
        value: { n: acked.length, from: 'producer' },
      })
    }
    expectExactlyOnce(
      rows.filter((row) => ackedIds.has(row.idempotency_key)),
      acked.map(({ id, key, value }) => ({ id, key, value })),
    )
    await instance.close()
  })
})
