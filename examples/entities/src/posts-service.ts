import type { IncomingMessage, Server } from 'node:http'
import { HttpError, jsonServer, listen, readJson } from '@layercache/test-utils/example-http'
import type { Redis } from 'ioredis'
import {
  type CacheStack,
  EntityCache,
  InvalidKeyError,
  InvalidOptionError,
  InvalidValueError,
  LayerUnavailableError,
} from 'layercache'
import type { NewPost, Post, PostsDb } from './posts-db'

/** Rows and lists live 10 minutes in Redis; a change removes them earlier. */
const TTL_MS = 600_000
/** A user's list keeps their 500 newest posts; `/recent` the 50 newest of everyone. */
const USER_POSTS_MAX = 500
const RECENT_MAX = 50

export interface PostsServiceOptions {
  readonly redis: Redis
  readonly db: PostsDb
  /** Every Redis key of this service starts with it. */
  readonly keyPrefix: string
  /** The in-process L1 (with an invalidationBus when several instances run); default: EntityCache's own. */
  readonly stack?: CacheStack
}

/**
 * The cache of the service: posts by id, each user's posts and the most recent posts as indexed lists
 * (sorted sets of ids, newest first) that track membership, so deleting a post removes it from every list.
 */
export function createPostsCache(options: PostsServiceOptions): EntityCache {
  const { db } = options
  return new EntityCache({
    redis: options.redis,
    keyPrefix: options.keyPrefix,
    ...(options.stack === undefined ? {} : { stack: options.stack }),
    entities: {
      // Rows missing from the cache (a list page whose rows expired, GET /posts/:id) are read in one query.
      post: { id: 'id', ttl: TTL_MS, load: (ids) => db.findMany(ids.map(Number)) },
    },
    lists: {
      userPosts: {
        kind: 'indexed',
        entity: 'post',
        score: 'id', // ids come from a sequence: newest first
        maxSize: USER_POSTS_MAX,
        ttl: TTL_MS,
        trackMembership: true,
        load: ({ userId }) => db.byUser(Number(userId), USER_POSTS_MAX),
      },
      recent: {
        kind: 'indexed',
        entity: 'post',
        score: 'id',
        maxSize: RECENT_MAX,
        ttl: TTL_MS,
        trackMembership: true,
        load: () => db.recent(RECENT_MAX),
      },
    },
  })
}

/** A POST or PATCH body: a JSON object of at most 64 000 characters. */
async function readObject(request: IncomingMessage): Promise<Record<string, unknown>> {
  const notObject = 'expected a JSON object'
  const value = await readJson(request, 64_000, { tooLarge: 'body too large', notJson: notObject })
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return value as Record<string, unknown>
  }
  throw new HttpError(400, notObject)
}

function positiveId(text: string): number {
  const id = Number(text)
  if (!Number.isSafeInteger(id) || id <= 0) throw new HttpError(400, `not an id: ${text}`)
  return id
}

/** `?offset=&limit=` as numbers; absent ones are left to getListPage's defaults (0 and 20). */
function pageOptions(url: URL): { offset?: number; limit?: number } {
  const read = (name: string) => {
    const text = url.searchParams.get(name)
    return text === null || text === '' ? undefined : Number(text)
  }
  const offset = read('offset')
  const limit = read('limit')
  return { ...(offset === undefined ? {} : { offset }), ...(limit === undefined ? {} : { limit }) }
}

function newPost(body: Record<string, unknown>): NewPost {
  const { userId, title, text } = { userId: body.userId, title: body.title, text: body.body }
  if (typeof userId !== 'number' || !Number.isSafeInteger(userId) || userId <= 0) {
    throw new HttpError(400, 'userId must be a positive integer')
  }
  if (typeof title !== 'string' || title === '') throw new HttpError(400, 'title must be a non-empty string')
  return { userId, title, body: typeof text === 'string' ? text : '' }
}

function postChange(body: Record<string, unknown>): { title?: string; body?: string } {
  const change: { title?: string; body?: string } = {}
  if (typeof body.title === 'string' && body.title !== '') change.title = body.title
  if (typeof body.body === 'string') change.body = body.body
  if (change.title === undefined && change.body === undefined) {
    throw new HttpError(400, 'nothing to change: give a title or a body')
  }
  return change
}

/**
 * The routes. Reads go through the cache (the database only on a miss); writes go to the database
 * first, then tell the cache.
 */
async function route(
  cache: EntityCache,
  db: PostsDb,
  request: IncomingMessage,
  url: URL,
): Promise<[number, unknown]> {
  const path = url.pathname
  const method = request.method ?? 'GET'
  const userPosts = /^\/users\/([^/]+)\/posts$/.exec(path)
  const post = /^\/posts\/([^/]+)$/.exec(path)

  if (method === 'GET' && path === '/recent') {
    return [200, await cache.getListPage<Post>('recent', {}, pageOptions(url))]
  }
  if (method === 'GET' && userPosts !== null) {
    const userId = positiveId(userPosts[1]!)
    return [200, await cache.getListPage<Post>('userPosts', { userId }, pageOptions(url))]
  }
  if (method === 'POST' && path === '/posts') {
    const created = await db.insert(newPost(await readObject(request)))
    // Into the lists Redis holds (each returns false, changing nothing, for a list it does not hold:
    // the next read builds that one from the database, new post included).
    await Promise.all([
      cache.addToList('userPosts', { userId: created.userId }, created),
      cache.addToList('recent', {}, created),
    ])
    return [201, created]
  }
  if (post !== null) {
    const id = positiveId(post[1]!)
    if (method === 'GET') {
      const found = await cache.getOrLoadEntity<Post>('post', id)
      return found === undefined ? [404, { error: `no post ${id}` }] : [200, found]
    }
    if (method === 'DELETE') {
      const existed = await db.delete(id)
      // The row and its id in every list holding it (this user's, /recent), in one step.
      const removedFromCache = await cache.invalidateEntity('post', id)
      return existed ? [200, { deleted: id, removedFromCache }] : [404, { error: `no post ${id}` }]
    }
    if (method === 'PATCH') {
      const updated = await db.update(id, postChange(await readObject(request)))
      if (updated === undefined) return [404, { error: `no post ${id}` }]
      // Refreshes the cached row (and its pages) only if Redis holds it; otherwise the next read loads it.
      const cacheRefreshed = await cache.updateEntityIfExists('post', updated)
      return [200, { post: updated, cacheRefreshed }]
    }
  }
  return [404, { error: 'try GET /recent, /users/1/posts?offset=0&limit=10, /posts/1' }]
}

export interface PostsService {
  readonly cache: EntityCache
  readonly server: Server
  /** Starts listening (port 0: any free port); resolves with the base URL. */
  listen(port?: number, host?: string): Promise<string>
  close(): Promise<void>
}

/** The status of an error other than an HttpError. */
function errorStatus(error: unknown): number {
  // Bad paging options, a bad id: the cache refused them before touching anything.
  const invalid =
    error instanceof InvalidOptionError ||
    error instanceof InvalidValueError ||
    error instanceof InvalidKeyError
  return invalid ? 400 : error instanceof LayerUnavailableError ? 503 : 500
}

export function createPostsService(options: PostsServiceOptions): PostsService {
  const cache = createPostsCache(options)
  const server = jsonServer(
    (request) => route(cache, options.db, request, new URL(request.url ?? '/', 'http://posts')),
    { errorStatus },
  )
  return {
    cache,
    server,
    listen: (port, host) => listen(server, port, host),
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await cache.close()
    },
  }
}
