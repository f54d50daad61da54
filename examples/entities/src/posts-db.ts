import type pg from 'pg'

/**
 * A post as the service hands it out and the cache stores it. Rows are cached as JSON, so every field is
 * a JSON type: `createdAt` is an ISO string (a Date would come back from the cache as a string).
 */
export interface Post {
  readonly id: number
  readonly userId: number
  readonly title: string
  readonly body: string
  readonly createdAt: string
}

export interface NewPost {
  readonly userId: number
  readonly title: string
  readonly body: string
}

interface PostRow {
  id: number
  user_id: number
  title: string
  body: string
  created_at: Date
}

const COLUMNS = 'id, user_id, title, body, created_at'

function toPost(row: PostRow): Post {
  return {
    id: row.id,
    userId: row.user_id,
    title: row.title,
    body: row.body,
    createdAt: row.created_at.toISOString(),
  }
}

/** The posts table, counting the reads the cache should spare. */
export class PostsDb {
  /** Queries run, by kind: rows by id, a user's posts, the most recent posts. */
  readonly queries = { byId: 0, byUser: 0, recent: 0 }

  constructor(
    readonly pool: pg.Pool,
    readonly table = 'posts',
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`not a plain table name: ${table}`)
  }

  async create(): Promise<void> {
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
      id serial PRIMARY KEY,
      user_id integer NOT NULL,
      title text NOT NULL,
      body text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`)
    await this.pool.query(
      `CREATE INDEX IF NOT EXISTS ${this.table}_by_user ON ${this.table} (user_id, id DESC)`,
    )
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`)
  }

  /** Rows by id, in any order; ids that do not exist are left out. */
  async findMany(ids: readonly number[]): Promise<Post[]> {
    this.queries.byId++
    const { rows } = await this.pool.query<PostRow>(
      `SELECT ${COLUMNS} FROM ${this.table} WHERE id = ANY($1::int[])`,
      [ids],
    )
    return rows.map(toPost)
  }

  /** A user's newest posts (what the `userPosts` list is built from). */
  async byUser(userId: number, limit: number): Promise<Post[]> {
    this.queries.byUser++
    const { rows } = await this.pool.query<PostRow>(
      `SELECT ${COLUMNS} FROM ${this.table} WHERE user_id = $1 ORDER BY id DESC LIMIT $2`,
      [userId, limit],
    )
    return rows.map(toPost)
  }

  /** The newest posts of everyone (what the `recent` list is built from). */
  async recent(limit: number): Promise<Post[]> {
    this.queries.recent++
    const { rows } = await this.pool.query<PostRow>(
      `SELECT ${COLUMNS} FROM ${this.table} ORDER BY id DESC LIMIT $1`,
      [limit],
    )
    return rows.map(toPost)
  }

  async insert(post: NewPost): Promise<Post> {
    const { rows } = await this.pool.query<PostRow>(
      `INSERT INTO ${this.table} (user_id, title, body) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
      [post.userId, post.title, post.body],
    )
    return toPost(rows[0]!)
  }

  /** Changes the title and/or body; undefined when there is no such post. */
  async update(id: number, change: { title?: string; body?: string }): Promise<Post | undefined> {
    const { rows } = await this.pool.query<PostRow>(
      `UPDATE ${this.table} SET title = COALESCE($2, title), body = COALESCE($3, body)
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, change.title ?? null, change.body ?? null],
    )
    return rows[0] === undefined ? undefined : toPost(rows[0])
  }

  /** Whether the post existed. */
  async delete(id: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(`DELETE FROM ${this.table} WHERE id = $1`, [id])
    return (rowCount ?? 0) > 0
  }
}
