import type { Post, PostsDb } from './posts-db'

interface Page {
  readonly items: readonly Post[]
  readonly total: number
}

export interface WalkthroughSummary {
  /** Concurrent first requests for a user's page / for /recent, and the list queries they cost. */
  readonly coldRequests: number
  readonly userListQueries: number
  readonly recentListQueries: number
  /** List queries for two more pages of the user's list and the same /recent again (all cached). */
  readonly listQueriesForWarmPages: number
  readonly deletedId: number
  readonly removedFromCache: number
  /** Right after DELETE resolved: whether the id is still on the user's list, on /recent, by id. */
  readonly afterDelete: { readonly inUserList: boolean; readonly inRecent: boolean; readonly byId: number }
  readonly userTotalBefore: number
  readonly userTotalAfter: number
  /** List queries the delete cost (0: the id is taken out of the cached lists in place). */
  readonly listQueriesForDelete: number
  readonly patchedTitleInList: string | undefined
  readonly cacheRefreshed: boolean
  readonly createdId: number
  readonly createdOnTop: { readonly userList: boolean; readonly recent: boolean }
  readonly listQueriesForWrites: number
}

async function call<T>(base: string, path: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const response = await fetch(`${base}${path}`, {
    ...init,
    headers: init?.body === undefined ? {} : { 'content-type': 'application/json' },
  })
  return { status: response.status, body: (await response.json()) as T }
}

async function get<T>(base: string, path: string): Promise<T> {
  const { status, body } = await call<T>(base, path)
  if (status !== 200) throw new Error(`GET ${path} answered ${status}: ${JSON.stringify(body)}`)
  return body
}

/** Three users with ten posts each, written straight to the database (the cache knows nothing yet). */
export async function seedPosts(db: PostsDb): Promise<void> {
  for (let i = 1; i <= 10; i++) {
    for (const userId of [1, 2, 3]) {
      await db.insert({ userId, title: `post ${i} of user ${userId}`, body: 'lorem ipsum' })
    }
  }
}

const listQueries = (db: PostsDb) => db.queries.byUser + db.queries.recent
const ids = (page: Page) => page.items.map((post) => post.id)

/**
 * The service from the outside, over HTTP: cold lists cost one query each however many requests arrive
 * together; a DELETE removes the post from every list at once; a PATCH refreshes it in place; a POST
 * lands on top of the cached lists. Every step is checked by counting the database's queries.
 */
export async function runWalkthrough(
  base: string,
  db: PostsDb,
  log: (line: string) => void = console.log,
): Promise<WalkthroughSummary> {
  // 1. Cold lists: 20 requests at once for user 1's first pages (four different ones), 20 for /recent.
  const coldRequests = 20
  const before = { ...db.queries }
  await Promise.all([
    ...Array.from({ length: coldRequests }, (_, i) =>
      get<Page>(base, `/users/1/posts?offset=${(i % 4) * 2}&limit=5`),
    ),
    ...Array.from({ length: coldRequests }, () => get<Page>(base, '/recent?limit=5')),
  ])
  const userListQueries = db.queries.byUser - before.byUser
  const recentListQueries = db.queries.recent - before.recent
  log(
    `${coldRequests} concurrent GET /users/1/posts and ${coldRequests} GET /recent on cold lists: ` +
      `${userListQueries} + ${recentListQueries} database queries (one per list).`,
  )

  const warmStart = listQueries(db)
  const page2 = await get<Page>(base, '/users/1/posts?offset=5&limit=5')
  await get<Page>(base, '/users/1/posts?offset=8&limit=5')
  const recent = await get<Page>(base, '/recent?limit=10')
  const listQueriesForWarmPages = listQueries(db) - warmStart
  log(
    `Pages 2 and 3 of user 1 (ids ${ids(page2).join(', ')}, …) and /recent again: ` +
      `${listQueriesForWarmPages} database queries (pages are ranges of the sorted set in Redis).`,
  )

  // 2. DELETE user 1's newest post: it is on user 1's list and on /recent.
  const userList = await get<Page>(base, '/users/1/posts?limit=50')
  const deletedId = userList.items[0]!.id
  if (!ids(recent).includes(deletedId)) throw new Error(`post ${deletedId} should be on /recent`)
  const deleteStart = listQueries(db)
  const deleted = await call<{ removedFromCache: number }>(base, `/posts/${deletedId}`, { method: 'DELETE' })
  const [userAfter, recentAfter, byId] = await Promise.all([
    get<Page>(base, '/users/1/posts?limit=50'),
    get<Page>(base, '/recent?limit=50'),
    call(base, `/posts/${deletedId}`),
  ])
  const afterDelete = {
    inUserList: ids(userAfter).includes(deletedId),
    inRecent: ids(recentAfter).includes(deletedId),
    byId: byId.status,
  }
  const listQueriesForDelete = listQueries(db) - deleteStart
  log(
    `DELETE /posts/${deletedId}: invalidateEntity removed ${deleted.body.removedFromCache} entries (the row, ` +
      `its id in user 1's list and in /recent). Right after: on user 1's list ${afterDelete.inUserList}, ` +
      `on /recent ${afterDelete.inRecent}, GET /posts/${deletedId} ${afterDelete.byId}; user 1 has ` +
      `${userAfter.total} posts (was ${userList.total}); ${listQueriesForDelete} list queries.`,
  )

  // 3. PATCH a cached post, 4. POST a new one: both reach the cached lists without rebuilding them.
  const writesStart = listQueries(db)
  const patchedId = userAfter.items[0]!.id
  const patched = await call<{ cacheRefreshed: boolean }>(base, `/posts/${patchedId}`, {
    method: 'PATCH',
    body: JSON.stringify({ title: 'edited title' }),
  })
  const patchedTitleInList = (await get<Page>(base, '/users/1/posts?limit=5')).items.find(
    (post) => post.id === patchedId,
  )?.title
  log(
    `PATCH /posts/${patchedId}: updateEntityIfExists refreshed the cached row (${patched.body.cacheRefreshed}); ` +
      `user 1's first page now shows "${patchedTitleInList}".`,
  )
  const created = await call<Post>(base, '/posts', {
    method: 'POST',
    body: JSON.stringify({ userId: 1, title: 'a new post', body: 'hello' }),
  })
  const [userTop, recentTop] = await Promise.all([
    get<Page>(base, '/users/1/posts?limit=1'),
    get<Page>(base, '/recent?limit=1'),
  ])
  const createdOnTop = {
    userList: userTop.items[0]?.id === created.body.id,
    recent: recentTop.items[0]?.id === created.body.id,
  }
  const listQueriesForWrites = listQueries(db) - writesStart
  log(
    `POST /posts → post ${created.body.id}: on top of user 1's list ${createdOnTop.userList}, of /recent ` +
      `${createdOnTop.recent}; ${listQueriesForWrites} list queries for the PATCH and the POST.`,
  )

  return {
    coldRequests,
    userListQueries,
    recentListQueries,
    listQueriesForWarmPages,
    deletedId,
    removedFromCache: deleted.body.removedFromCache,
    afterDelete,
    userTotalBefore: userList.total,
    userTotalAfter: userAfter.total,
    listQueriesForDelete,
    patchedTitleInList,
    cacheRefreshed: patched.body.cacheRefreshed,
    createdId: created.body.id,
    createdOnTop,
    listQueriesForWrites,
  }
}
