import pg from 'pg'

/** DATABASE_URL, else the local server of a development machine. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test'

export interface ConnectPostgresOptions {
  /** Default: DATABASE_URL, else DEFAULT_DATABASE_URL. */
  readonly url?: string | undefined
  /** Pool size. Default 10. */
  readonly max?: number
}

/**
 * For the runnable examples and their tests: a pool, or one clear error saying which server could not be
 * reached (password hidden) and how to point elsewhere.
 */
export async function connectPostgres({
  url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL,
  max = 10,
}: ConnectPostgresOptions = {}): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 3_000 })
  pool.on('error', () => {}) // an idle connection the server dropped; the next query reconnects
  try {
    await pool.query('SELECT 1')
  } catch (error) {
    await pool.end().catch(() => {})
    const shown = url.replace(/:\/\/([^:@/]+):[^@/]*@/, '://$1:***@')
    throw new Error(
      `PostgreSQL is not reachable at ${shown}: ${(error as Error).message}. Start one, or set DATABASE_URL.`,
    )
  }
  return pool
}
