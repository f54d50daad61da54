import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { connectPostgres } from '@layercache/test-utils/example-postgres'
import type { Redis } from 'ioredis'
import type { WriteBehindEntry } from 'layercache'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Order, OrdersDb } from '../src/orders-db'
import { openShop, runOrderStory } from '../src/story'

let redis: TestRedis
let client: Redis
let pool: pg.Pool
const tables: OrdersDb[] = []
const streams: string[] = []

beforeAll(async () => {
  // PostgreSQL: DATABASE_URL, else postgres@127.0.0.1:5432/test; an unreachable server fails the file loudly.
  pool = await connectPostgres()
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(async () => {
  for (const db of tables) await db.drop()
  if (streams.length > 0) await client.del(...streams)
  await pool?.end()
  await redis?.close()
})

function uniqueTable(): string {
  return `wb_example_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
}

function entry(order: Order, sequence: string, id = `w-${sequence}`): WriteBehindEntry<Order> {
  return { id, key: `order:${order.id}`, value: order, sequence, queuedAt: 0, attempt: 1 }
}

describe('examples/write-behind', () => {
  it('serves orders from the cache at once, rides out a database outage and drains on shutdown', async () => {
    const table = uniqueTable()
    const shop = await openShop(client, pool, {
      table,
      queue: `${redis.keyPrefix}orders`,
      cachePrefix: `${redis.keyPrefix}shop:`,
    })
    tables.push(shop.db)
    streams.push(shop.checkout.writes.streamKey, shop.checkout.writes.deadLetterKey)
    const lines: string[] = []
    const summary = await runOrderStory(shop, client, (line) => lines.push(line))

    expect(summary.pagesServedFromCache).toBe(200)
    expect(summary.databaseReadsForPages).toBe(0)
    expect(summary.statusInDatabase).toBe('shipped')
    expect(summary.placedDuringOutage).toBe(50)
    expect(summary.retriesDuringOutage).toBeGreaterThan(0)
    expect(summary.rowsAfterOutage).toBe(250)
    // shutdown() resolved only once every queued order was in PostgreSQL.
    expect(summary.rowsAfterShutdown).toBe(350)
    expect(summary.queueLengthAfterShutdown).toBe(0)
    expect(summary.refusedAfterShutdown).toBe(true)
    expect(summary.deadLetters).toBe(0)
    expect(lines.length).toBe(6)
  })

  it('writes each batch idempotently and in queue order, whatever order the batches arrive in', async () => {
    const db = new OrdersDb(pool, uniqueTable())
    tables.push(db)
    await db.create()
    const base = { id: 'o1', customer: 'c', totalCents: 100 }
    const pending = entry({ ...base, status: 'pending' }, '1000-0')
    const paid = entry({ ...base, status: 'paid' }, '1000-1')
    const shipped = entry({ ...base, status: 'shipped' }, '1001-0')

    // The same order twice in one batch: one statement, the newest wins (no "affect row a second time").
    await db.writeBatch([pending, paid])
    expect((await db.find('o1'))?.status).toBe('paid')
    await db.writeBatch([shipped])
    // A redelivery of an older batch (a retry, or a takeover from a crashed instance) changes nothing.
    await db.writeBatch([pending, paid])
    await db.writeBatch([shipped])
    expect(await db.find('o1')).toEqual({ ...base, status: 'shipped' })
    expect(await db.count()).toBe(1)
  })
})
