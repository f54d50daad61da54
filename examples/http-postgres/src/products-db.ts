import type pg from 'pg'

export interface Product {
  readonly id: number
  readonly name: string
  readonly category: string
  readonly priceCents: number
}

/** What a PUT may change. */
export type ProductChange = Partial<Pick<Product, 'name' | 'category' | 'priceCents'>>

const SEED: readonly Omit<Product, 'id'>[] = [
  { name: 'Espresso machine', category: 'kitchen', priceCents: 19_900 },
  { name: 'Coffee grinder', category: 'kitchen', priceCents: 8_900 },
  { name: 'Kettle', category: 'kitchen', priceCents: 3_900 },
  { name: 'Garden hose', category: 'garden', priceCents: 2_900 },
  { name: 'Pruning shears', category: 'garden', priceCents: 1_900 },
  { name: 'Desk lamp', category: 'office', priceCents: 4_500 },
  { name: 'Notebook', category: 'office', priceCents: 600 },
  { name: 'Monitor arm', category: 'office', priceCents: 7_900 },
]

interface Row {
  id: number
  name: string
  category: string
  price_cents: number
}

const toProduct = (row: Row): Product => ({
  id: row.id,
  name: row.name,
  category: row.category,
  priceCents: row.price_cents,
})

/**
 * The products table, under a name of its own so several runs (and test files) can share one database.
 * It counts the queries the service makes, so the cache's effect can be seen (and tested) from outside.
 */
export class ProductsDb {
  /** SELECTs answered for the service (seeding not included). */
  reads = 0
  /** Committed UPDATE / DELETE transactions that changed a row. */
  writes = 0

  /**
   * Extra latency added to every SELECT, as a busy database would have (the story uses it so that a
   * stampede's requests really arrive while the first one's query is running). Default 0.
   */
  readDelayMs = 0

  constructor(
    readonly pool: pg.Pool,
    readonly table = 'products',
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`not a plain table name: ${table}`)
  }

  /** Creates the table and fills it with the same few products every time. */
  async createAndSeed(): Promise<void> {
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
      id serial PRIMARY KEY,
      name text NOT NULL,
      category text NOT NULL,
      price_cents integer NOT NULL CHECK (price_cents >= 0)
    )`)
    await this.pool.query(`CREATE INDEX IF NOT EXISTS ${this.table}_category ON ${this.table} (category)`)
    await this.pool.query(`TRUNCATE ${this.table} RESTART IDENTITY`)
    await this.pool.query(
      `INSERT INTO ${this.table} (name, category, price_cents)
       SELECT * FROM unnest($1::text[], $2::text[], $3::int[])`,
      [SEED.map((p) => p.name), SEED.map((p) => p.category), SEED.map((p) => p.priceCents)],
    )
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`)
  }

  /** How many products the seed inserts (ids 1 … seeded). */
  get seeded(): number {
    return SEED.length
  }

  async find(id: number): Promise<Product | undefined> {
    this.reads++
    await this.delay()
    const { rows } = await this.pool.query<Row>(
      `SELECT id, name, category, price_cents FROM ${this.table} WHERE id = $1`,
      [id],
    )
    return rows[0] === undefined ? undefined : toProduct(rows[0])
  }

  async listByCategory(category: string): Promise<Product[]> {
    this.reads++
    await this.delay()
    const { rows } = await this.pool.query<Row>(
      `SELECT id, name, category, price_cents FROM ${this.table} WHERE category = $1 ORDER BY id`,
      [category],
    )
    return rows.map(toProduct)
  }

  /**
   * Applies `change` in one transaction and returns the row as it was and as it is, once committed (the
   * caller needs the old category to invalidate the list the product leaves). Undefined: no such product.
   */
  async update(id: number, change: ProductChange): Promise<{ before: Product; after: Product } | undefined> {
    return this.transaction(async (client) => {
      const old = await client.query<Row>(
        `SELECT id, name, category, price_cents FROM ${this.table} WHERE id = $1 FOR UPDATE`,
        [id],
      )
      if (old.rows[0] === undefined) return undefined
      const updated = await client.query<Row>(
        `UPDATE ${this.table}
         SET name = coalesce($2, name), category = coalesce($3, category), price_cents = coalesce($4, price_cents)
         WHERE id = $1 RETURNING id, name, category, price_cents`,
        [id, change.name ?? null, change.category ?? null, change.priceCents ?? null],
      )
      return { before: toProduct(old.rows[0]), after: toProduct(updated.rows[0]!) }
    })
  }

  /** Deletes the product; returns the deleted row (its category is what the cache must drop). */
  async delete(id: number): Promise<Product | undefined> {
    return this.transaction(async (client) => {
      const { rows } = await client.query<Row>(
        `DELETE FROM ${this.table} WHERE id = $1 RETURNING id, name, category, price_cents`,
        [id],
      )
      return rows[0] === undefined ? undefined : toProduct(rows[0])
    })
  }

  private async delay(): Promise<void> {
    if (this.readDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.readDelayMs))
  }

  /** BEGIN … COMMIT on one connection; resolves only once the COMMIT has returned. */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect()
    try {
      await client.query('BEGIN')
      const result = await work(client)
      await client.query('COMMIT')
      if (result !== undefined) this.writes++
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }
}
