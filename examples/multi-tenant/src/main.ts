/**
 * # examples/multi-tenant: one cache namespace per tenant
 *
 * A catalog service for many tenants on node:http, their data in one PostgreSQL table keyed by
 * (tenant_id, id), and a CacheStack of MemoryLayer (L1) over RedisLayer (L2) in front of it. Each request
 * works through its tenant's view of the cache, `cache.namespace('tenant:<id>')`: keys, tags, prefixes
 * and patterns are scoped to it, so the handlers use plain keys (`item:1`) and tenants never collide.
 *
 *   GET  /t/:tenant/items/:id           the tenant's item, cache-aside
 *   GET  /t/:tenant/items               the tenant's catalog, one cached list
 *   PUT  /t/:tenant/items/:id           {"name"?, "stock"?}: UPDATE, then invalidate that tenant's keys
 *   POST /admin/tenants/:tenant/clear   invalidateByPrefix('') on the tenant's namespace: that tenant only
 *   GET  /stats                         cache.getStats() and the queries PostgreSQL answered
 *
 * Tenant ids are 1-32 of a-z, 0-9 and inner '-'; anything else gets a 400 before the cache or the
 * database is touched (read in src/service.ts why a ':' in a tenant id would be dangerous). There is no
 * per-tenant "bump generation": generations apply to the whole stack, not to a namespace.
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-multi-tenant start   # starts the service, plays two tenants against it
 *   pnpm --filter @layercache/example-multi-tenant serve   # starts it and keeps it up for curl; Ctrl-C stops
 *
 * Needs PostgreSQL: DATABASE_URL, by default postgres://postgres@127.0.0.1:5432/test. Redis: REDIS_URL,
 * else a throwaway redis-server of its own. The table and the cache keys get names unique to the run and
 * are removed on exit. PORT picks the port of `serve` (default: any free one).
 *
 * Files: src/tenants-db.ts (the table), src/service.ts (the routes, the namespaces, the tenant id check),
 * src/story.ts (two tenants' story), test/multi-tenant.test.ts (no collisions, clearing one tenant
 * keeps the other's entries in memory and Redis, malformed ids refused before the cache).
 */

import { connectPostgres } from '@layercache/test-utils/example-postgres'
import { connectRedis } from '@layercache/test-utils/example-redis'
import { startTenantService } from './service'
import { runTenantStory } from './story'
import { TenantsDb } from './tenants-db'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis for its second layer: ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
const client = redis.client
console.log(`Using ${redis.description}.`)
const pool = await connectPostgres()
const run = `${process.pid}_${Date.now().toString(36)}`
const cachePrefix = `example-tenants-${run}:`
redis.removeOnClose(cachePrefix) // every key of the run, the layer's own included, goes on exit
const db = new TenantsDb(pool, `example_tenant_items_${run}`)
await db.createAndSeed()
console.log(
  `Seeded PostgreSQL table ${db.table}: ` +
    Object.entries(db.tenants)
      .map(([tenant, items]) => `tenant ${tenant} with items 1-${items}`)
      .join(', ') +
    '.',
)
const service = await startTenantService({
  redis: client,
  db,
  cachePrefix,
  port: Number(process.env.PORT ?? 0),
})
console.log(`The catalog service listens on ${service.url}.`)

// The example leaves nothing behind: its table and its cache entries go.
let cleaning: Promise<void> | undefined
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await service.close()
    await db.drop()
    await pool.end()
    await redis.close()
  })()
  return cleaning
}

if (process.argv.includes('--serve')) {
  console.log(`Try:
  curl ${service.url}/t/acme/items/1
  curl ${service.url}/t/globex/items/1
  curl ${service.url}/t/acme/items
  curl -X PUT -H 'content-type: application/json' -d '{"stock": 0}' ${service.url}/t/acme/items/1
  curl -X POST ${service.url}/admin/tenants/acme/clear
  curl ${service.url}/t/acme:item/items/1       # 400
  curl ${service.url}/stats
Ctrl-C stops the service and drops the table.`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanUp().finally(() => process.exit(0))
    })
  }
} else {
  try {
    await runTenantStory(service, client)
  } catch (error) {
    console.error(error)
    process.exitCode = 1
  } finally {
    await cleanUp()
  }
}
