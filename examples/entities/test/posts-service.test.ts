import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { connectPostgres } from '@layercache/test-utils/example-postgres'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Post, PostsDb } from '../src/posts-db'
import { createPostsService, type PostsService } from '../src/posts-service'
import { runWalkthrough, seedPosts } from '../src/walkthrough'

let redis: TestRedis
let client: Redis
let pool: pg.Pool
const tables: PostsDb[] = []
const services: PostsService[] = []

beforeAll(async () => {
  // PostgreSQL: DATABASE_URL, else postgres@127.0.0.1:5432/test; an unreachable server fails the file loudly.
  pool = await connectPostgres()
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(async () => {
  for (const service of services) await service.close()
  for (const db of tables) await db.drop()
  await pool?.end()
  await redis?.close()
})

/** A service on its own table and key prefix, listening on a free port, with the seeded posts. */
async function startService(): Promise<{ base: string; db: PostsDb; service: PostsService }> {
  const run = `${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  const db = new PostsDb(pool, `posts_example_${run}`)
  tables.push(db)
  await db.create()
  await seedPosts(db)
  const service = createPostsService({ redis: client, db, keyPrefix: `${redis.keyPrefix}posts-${run}` })
  services.push(service)
  return { base: await service.listen(), db, service }
}

interface Page {
  items: Post[]
  total: number
}

async function get<T>(url: string): Promise<T> {
  const response = await fetch(url)
  expect(response.status).toBe(200)
  return (await response.json()) as T
}

describe('examples/entities', () => {
  it('serves cold lists with one query each and takes a deleted post off every list at once', async () => {
    const { base, db } = await startService()
    const lines: string[] = []
    const summary = await runWalkthrough(base, db, (line) => lines.push(line))

    expect(summary.userListQueries).toBe(1)
    expect(summary.recentListQueries).toBe(1)
    expect(summary.listQueriesForWarmPages).toBe(0)
    // The row, its id in user 1's list and in /recent.
    expect(summary.removedFromCache).toBe(3)
    expect(summary.afterDelete).toEqual({ inUserList: false, inRecent: false, byId: 404 })
    expect(summary.userTotalAfter).toBe(summary.userTotalBefore - 1)
    expect(summary.listQueriesForDelete).toBe(0)
    expect(summary.cacheRefreshed).toBe(true)
    expect(summary.patchedTitleInList).toBe('edited title')
    expect(summary.createdOnTop).toEqual({ userList: true, recent: true })
    expect(summary.listQueriesForWrites).toBe(0)
    expect(lines).toHaveLength(5)
  })

  it('queries the database once per cold list, however many requests and pages arrive together', async () => {
    const { base, db } = await startService()
    const urls = [1, 2, 3].flatMap((user) =>
      Array.from({ length: 12 }, (_, i) => `${base}/users/${user}/posts?offset=${i % 6}&limit=3`),
    )
    const pages = await Promise.all(urls.map((url) => get<Page>(url)))
    expect(db.queries.byUser).toBe(3)
    expect(pages.every((page) => page.total === 10 && page.items.length === 3)).toBe(true)
    // Every row came with its list (written to Redis by the rebuild): no query by id.
    expect(db.queries.byId).toBe(0)
    await Promise.all(urls.map((url) => get<Page>(url)))
    expect(db.queries.byUser).toBe(3)
  })

  it('never shows a deleted post again once DELETE answered, while readers keep reading', async () => {
    const { base, db } = await startService()
    const lists = [`${base}/users/2/posts?limit=50`, `${base}/recent?limit=50`]
    const victims = (await get<Page>(lists[0]!)).items.slice(0, 5).map((post) => post.id)
    await get<Page>(lists[1]!)
    const deletedAt = new Map<number, number>()
    let stop = false
    const seenAfterDelete: string[] = []
    // Readers hammer both lists (and the rows) during the deletes; a response that started after a
    // DELETE answered must not contain that post.
    const readers = Array.from({ length: 4 }, async (_, r) => {
      while (!stop) {
        const started = performance.now()
        const url = lists[r % 2]!
        const page = await get<Page>(url)
        for (const post of page.items) {
          const at = deletedAt.get(post.id)
          if (at !== undefined && at < started) seenAfterDelete.push(`${post.id} on ${url}`)
        }
      }
    })
    for (const id of victims) {
      const response = await fetch(`${base}/posts/${id}`, { method: 'DELETE' })
      expect(response.status).toBe(200)
      deletedAt.set(id, performance.now())
      expect((await fetch(`${base}/posts/${id}`)).status).toBe(404)
    }
    stop = true
    await Promise.all(readers)
    expect(seenAfterDelete).toEqual([])
    const [userList, recent] = await Promise.all(lists.map((url) => get<Page>(url)))
    expect(userList!.total).toBe(5)
    expect(recent!.total).toBe(25)
    for (const id of victims) {
      expect(userList!.items.map((post) => post.id)).not.toContain(id)
      expect(recent!.items.map((post) => post.id)).not.toContain(id)
    }
    // Two list queries in all: the first read of each list; the deletes rebuilt nothing.
    expect(db.queries.byUser + db.queries.recent).toBe(2)
  })

  it('answers 404 and 400 without touching the cache for bad requests', async () => {
    const { base } = await startService()
    expect((await fetch(`${base}/posts/999999`)).status).toBe(404)
    expect((await fetch(`${base}/posts/abc`)).status).toBe(400)
    expect((await fetch(`${base}/users/1/posts?limit=1000`)).status).toBe(400)
    expect((await fetch(`${base}/posts/999999`, { method: 'DELETE' })).status).toBe(404)
    const patch = await fetch(`${base}/posts/1`, { method: 'PATCH', body: '{}' })
    expect(patch.status).toBe(400)
  })
})
