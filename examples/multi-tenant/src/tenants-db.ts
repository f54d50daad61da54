import type pg from 'pg'

export interface Item {
  readonly tenant: string
  readonly id: number
  readonly name: string
  readonly stock: number
}

/** What a PUT may change. */
export type ItemChange = Partial<Pick<Item, 'name' | 'stock'>>

/** Two tenants whose catalogs use the same ids (1, 2, 3, …) for different things. */
const SEED: Readonly<Record<string, readonly string[]>> = {
  acme: ['Anvil', 'Rocket skates', 'Giant magnet', 'Bird seed'],
  globex: ['Doomsday device', 'Hammock', 'Volcano lair map'],
}

interface Row {
  tenant_id: string
  id: number
  name: string
  stock: number
}

const toItem = (row: Row): Item => ({ tenant: row.tenant_id, id: row.id, name: row.name, stock: row.stock })

/**
 * Every tenant's catalog in one table, keyed by (tenant_id, id): the usual shared-schema multi-tenancy.
 * Every query names the tenant. The table has a name of its own per run, so runs and test files can share
 * one database; the service's reads are counted, so the cache's effect can be seen from outside.
 */
export class TenantsDb {
  /** SELECTs answered for the service (seeding not included). */
  reads = 0

  constructor(
    readonly pool: pg.Pool,
    readonly table = 'tenant_items',
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`not a plain table name: ${table}`)
  }

  async createAndSeed(): Promise<void> {
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
      tenant_id text NOT NULL,
      id integer NOT NULL,
      name text NOT NULL,
      stock integer NOT NULL,
      PRIMARY KEY (tenant_id, id)
    )`)
    await this.pool.query(`TRUNCATE ${this.table}`)
    const rows = Object.entries(SEED).flatMap(([tenant, names]) =>
      names.map((name, i) => ({ tenant, id: i + 1, name, stock: 10 * (i + 1) })),
    )
    await this.pool.query(
      `INSERT INTO ${this.table} (tenant_id, id, name, stock)
       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[])`,
      [rows.map((r) => r.tenant), rows.map((r) => r.id), rows.map((r) => r.name), rows.map((r) => r.stock)],
    )
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`)
  }

  /** The seeded tenants and how many items each has. */
  get tenants(): Readonly<Record<string, number>> {
    return Object.fromEntries(Object.entries(SEED).map(([tenant, names]) => [tenant, names.length]))
  }

  async find(tenant: string, id: number): Promise<Item | undefined> {
    this.reads++
    const { rows } = await this.pool.query<Row>(
      `SELECT tenant_id, id, name, stock FROM ${this.table} WHERE tenant_id = $1 AND id = $2`,
      [tenant, id],
    )
    return rows[0] === undefined ? undefined : toItem(rows[0])
  }

  async list(tenant: string): Promise<Item[]> {
    this.reads++
    const { rows } = await this.pool.query<Row>(
      `SELECT tenant_id, id, name, stock FROM ${this.table} WHERE tenant_id = $1 ORDER BY id`,
      [tenant],
    )
    return rows.map(toItem)
  }

  /** One statement, committed when it resolves (autocommit); undefined when the tenant has no such item. */
  async update(tenant: string, id: number, change: ItemChange): Promise<Item | undefined> {
    const { rows } = await this.pool.query<Row>(
      `UPDATE ${this.table} SET name = coalesce($3, name), stock = coalesce($4, stock)
       WHERE tenant_id = $1 AND id = $2 RETURNING tenant_id, id, name, stock`,
      [tenant, id, change.name ?? null, change.stock ?? null],
    )
    return rows[0] === undefined ? undefined : toItem(rows[0])
  }
}
