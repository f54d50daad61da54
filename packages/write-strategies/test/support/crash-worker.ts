// A write-behind instance in its own process, for write-behind-crash.test.ts (run with
// `--conditions=@layercache/source --import tsx`). Its configuration comes as JSON in argv[2].
//
// mode 'consume': consumes the queue; the writer inserts into PostgreSQL (idempotent per entry id). On its
//   first batch it inserts `insertBeforeHang` entries, tells the parent ('hung', with the ids it inserted)
//   and hangs, so the parent can SIGKILL it mid-batch. Later batches (none expected) are inserted whole.
// mode 'produce': calls write() in a loop and reports every write() that resolved ('acked') before the
//   next one; the parent SIGKILLs it at some moment.
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { Redis } from 'ioredis'
import pg from 'pg'
import { WriteBehind, type WriteBehindEntry } from '../../src'

export interface CrashWorkerConfig {
  readonly mode: 'consume' | 'produce'
  readonly redisUrl: string
  readonly queue: string
  readonly consumer: string
  readonly table: string
  readonly pg: pg.ClientConfig
  readonly batchSize: number
  /** consume: entries of the first batch inserted before hanging. */
  readonly insertBeforeHang: number
}

export type CrashWorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'hung'; readonly batch: readonly string[]; readonly inserted: readonly string[] }
  | { readonly type: 'acked'; readonly id: string; readonly key: string; readonly value: unknown }
  | { readonly type: 'failed'; readonly error: string }

const config = JSON.parse(process.argv[2] ?? '{}') as CrashWorkerConfig

function send(message: CrashWorkerMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send?.(message, undefined, {}, (error) => (error ? reject(error) : resolve()))
  })
}

async function insert(db: pg.Client, entry: WriteBehindEntry): Promise<void> {
  await db.query(
    `INSERT INTO ${config.table} (idempotency_key, key, value, attempt) VALUES ($1, $2, $3, $4) ` +
      'ON CONFLICT (idempotency_key) DO NOTHING',
    [entry.id, entry.key, JSON.stringify(entry.value), entry.attempt],
  )
}

async function consume(): Promise<void> {
  const db = new pg.Client(config.pg)
  await db.connect()
  const client = new Redis(config.redisUrl)
  let batches = 0
  const queue = new WriteBehind({
    cache: new CacheStack([new MemoryLayer()]),
    client,
    queue: config.queue,
    consumer: config.consumer,
    batchSize: config.batchSize,
    pollIntervalMs: 10,
    writer: async (entries) => {
      batches++
      if (batches > 1) {
        for (const entry of entries) await insert(db, entry)
        return
      }
      const inserted: string[] = []
      for (const entry of entries.slice(0, config.insertBeforeHang)) {
        await insert(db, entry)
        inserted.push(entry.id)
      }
      await send({ type: 'hung', batch: entries.map((entry) => entry.id), inserted })
      await new Promise(() => {}) // never returns: the parent kills us here
    },
  })
  queue.on('error', ({ error }) => void send({ type: 'failed', error: String(error) }))
  queue.start()
  await send({ type: 'ready' })
}

async function produce(): Promise<void> {
  const client = new Redis(config.redisUrl)
  const queue = new WriteBehind({
    cache: new CacheStack([new MemoryLayer()]),
    client,
    queue: config.queue,
    consumer: config.consumer,
    writer: async () => {
      throw new Error('the producer never consumes')
    },
  })
  await send({ type: 'ready' })
  for (let i = 0; ; i++) {
    const key = `item:${i % 7}`
    const value = { n: i, from: 'producer' }
    const { id } = await queue.write(key, value)
    await send({ type: 'acked', id, key, value })
  }
}

const run = config.mode === 'consume' ? consume : produce
run().catch((error: unknown) => {
  void send({
    type: 'failed',
    error: error instanceof Error ? (error.stack ?? error.message) : String(error),
  })
})
