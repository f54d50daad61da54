import type { WriteBehindEntry } from 'layercache'
import type pg from 'pg'

export type OrderStatus = 'pending' | 'paid' | 'shipped'

export interface Order {
  readonly id: string
  readonly customer: string
  readonly totalCents: number
  readonly status: OrderStatus
}

/**
 * The orders table and the write-behind writer for it. The writer is what makes at-least-once delivery
 * safe: one multi-row upsert per batch that only moves a row forward in queue order, so a redelivered
 * entry (same sequence) changes nothing and an older one retried after a newer one never wins.
 */
export class OrdersDb {
  /** Queries that read orders (the cache should spare most of them). */
  reads = 0
  /** Writer calls that reached the database. */
  batches = 0
  /** While true, every batch fails as if the database were unreachable (the story's outage). */
  down = false

  constructor(
    readonly pool: pg.Pool,
    readonly table = 'orders',
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`not a plain table name: ${table}`)
  }

  async create(): Promise<void> {
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
      id text PRIMARY KEY,
      customer text NOT NULL,
      total_cents integer NOT NULL,
      status text NOT NULL,
      write_id text NOT NULL,
      stream_ms bigint NOT NULL,
      stream_seq bigint NOT NULL,
      written_at timestamptz NOT NULL DEFAULT now()
    )`)
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`)
  }

  async find(id: string): Promise<Order | undefined> {
    this.reads++
    const { rows } = await this.pool.query<{
      id: string
      customer: string
      total_cents: number
      status: string
    }>(`SELECT id, customer, total_cents, status FROM ${this.table} WHERE id = $1`, [id])
    const row = rows[0]
    if (row === undefined) return undefined
    return {
      id: row.id,
      customer: row.customer,
      totalCents: row.total_cents,
      status: row.status as OrderStatus,
    }
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.table}`)
    return Number(rows[0]?.n ?? 0)
  }

  /** The writer handed to WriteBehind: one statement per batch, idempotent, newest-wins per order. */
  readonly writeBatch = async (entries: readonly WriteBehindEntry<Order>[]): Promise<void> => {
    if (this.down) throw new Error('connect ECONNREFUSED (simulated database outage)')
    // An order twice in one batch would make the upsert fail ("cannot affect row a second time"): the
    // queue hands entries over in queue order, so the last one of each order is its newest.
    const newest = new Map<string, WriteBehindEntry<Order>>()
    for (const entry of entries) newest.set(entry.value.id, entry)
    const rows = [...newest.values()]
    const sequence = rows.map((entry) => entry.sequence.split('-'))
    await this.pool.query(
      `INSERT INTO ${this.table} AS o (id, customer, total_cents, status, write_id, stream_ms, stream_seq)
       SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
       ON CONFLICT (id) DO UPDATE SET
         customer = EXCLUDED.customer, total_cents = EXCLUDED.total_cents, status = EXCLUDED.status,
         write_id = EXCLUDED.write_id, stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq,
         written_at = now()
       WHERE (o.stream_ms, o.stream_seq) < (EXCLUDED.stream_ms, EXCLUDED.stream_seq)`,
      [
        rows.map((entry) => entry.value.id),
        rows.map((entry) => entry.value.customer),
        rows.map((entry) => entry.value.totalCents),
        rows.map((entry) => entry.value.status),
        rows.map((entry) => entry.id),
        sequence.map(([ms]) => ms),
        sequence.map(([, seq]) => seq),
      ],
    )
    this.batches++
  }
}
