import { connectPostgres } from '@layercache/test-utils/example-postgres'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { PostsDb } from './posts-db'
import { createPostsService } from './posts-service'
import { runWalkthrough, seedPosts } from './walkthrough'

// `start` serves until Ctrl-C after a short walk-through; `start -- --once` exits after it.
const once = process.argv.includes('--once')
const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis (rows and lists live there): ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
console.log(`Using ${redis.description}.`)
const pool = await connectPostgres()
const run = `${process.pid}_${Date.now().toString(36)}`
const db = new PostsDb(pool, `example_posts_${run}`)
await db.create()
const service = createPostsService({ redis: redis.client, db, keyPrefix: `example-posts-${run}` })

// The example leaves nothing behind: its table and its cache keys (only those: the prefix scopes the wipe).
// The table goes even when Redis is gone by then.
let cleaning: Promise<void> | undefined
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await service.close().catch(() => {})
    await service.cache
      .clearAllCache({ confirm: 'YES_WIPE_ALL', allowProduction: true })
      .catch((error: unknown) =>
        console.error(`Could not remove the cache keys: ${(error as Error).message}`),
      )
    await db.drop()
    await pool.end()
    await redis.close()
  })()
  return cleaning
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    cleanUp().finally(() => process.exit(0))
  })
}

try {
  const base = await service.listen(Number(process.env.PORT ?? 0))
  await seedPosts(db)
  console.log(`Posts service on ${base} (table ${db.table}: 3 users, 10 posts each).\n`)
  await runWalkthrough(base, db)
  if (once) await cleanUp()
  else {
    console.log(`\nServing until Ctrl-C. Try:
  curl ${base}/recent
  curl '${base}/users/2/posts?offset=0&limit=5'
  curl ${base}/posts/2
  curl -X PATCH ${base}/posts/2 -d '{"title":"renamed"}'
  curl -X POST ${base}/posts -d '{"userId":2,"title":"hi","body":"there"}'
  curl -X DELETE ${base}/posts/2`)
  }
} catch (error) {
  console.error(error)
  process.exitCode = 1
  await cleanUp()
}
