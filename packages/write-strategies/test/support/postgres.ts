import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** PostgreSQL for the crash tests: PG* environment variables, else 127.0.0.1:5432, user postgres, db test. */
export const PG_CONFIG: pg.ClientConfig = {
  host: process.env.PGHOST ?? '127.0.0.1',
  port: Number(process.env.PGPORT ?? 5432),
  user: process.env.PGUSER ?? 'postgres',
  database: process.env.PGDATABASE ?? 'test',
  ...(process.env.PGPASSWORD === undefined ? {} : { password: process.env.PGPASSWORD }),
  connectionTimeoutMillis: 5_000,
}

/** Connects, or fails (never skips) with what was tried and how to provide a PostgreSQL. */
export async function connectPostgres(): Promise<pg.Client> {
  const client = new pg.Client(PG_CONFIG)
  try {
    await client.connect()
    await client.query('SELECT 1')
    return client
  } catch (error) {
    await client.end().catch(() => {})
    const { host, port, user, database } = PG_CONFIG
    throw new Error(
      `write-behind crash tests need PostgreSQL, which is unreachable at ${host}:${port} ` +
        `(user ${user}, database ${database}): ${error instanceof Error ? error.message : String(error)}. ` +
        'Start a PostgreSQL there (trust auth) or set PGHOST / PGPORT / PGUSER / PGDATABASE / PGPASSWORD.',
      { cause: error },
    )
  }
}

export interface WrittenRow {
  readonly idempotency_key: string
  readonly key: string
  readonly value: unknown
  readonly attempt: number
}

/** A uniquely named table of idempotent writes; drop() removes it. */
export async function createWritesTable(db: pg.Client) {
  const name = `wb_crash_${randomBytes(6).toString('hex')}`
  await db.query(
    `CREATE TABLE ${name} (idempotency_key text PRIMARY KEY, key text NOT NULL, value jsonb NOT NULL, ` +
      'attempt integer NOT NULL)',
  )
  return {
    name,
    async rows(): Promise<WrittenRow[]> {
      const { rows } = await db.query<WrittenRow>(
        `SELECT idempotency_key, key, value, attempt FROM ${name} ORDER BY idempotency_key`,
      )
      return rows
    },
    async drop(): Promise<void> {
      await db.query(`DROP TABLE IF EXISTS ${name}`)
    },
  }
}
