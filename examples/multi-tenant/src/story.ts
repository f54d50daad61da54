import type { Redis } from 'ioredis'
import { scanPattern } from 'layercache'
import type { ServiceStats, TenantService } from './service'
import type { Item } from './tenants-db'

export interface HttpResult<T = unknown> {
  readonly status: number
  readonly body: T
}

/** A tiny client for the service, as any other HTTP client would call it. */
export function tenantClient(url: string) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<HttpResult<T>> => {
    const response = await fetch(url + path, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    })
    return { status: response.status, body: (await response.json()) as T }
  }
  return {
    /** `tenant` goes into the path as it is: the story and the tests send malformed ones on purpose. */
    item: (tenant: string, id: number) => call<Item & { error?: string }>('GET', `/t/${tenant}/items/${id}`),
    items: (tenant: string) => call<{ items: Item[] }>('GET', `/t/${tenant}/items`),
    update: (tenant: string, id: number, change: Record<string, unknown>) =>
      call<Item>('PUT', `/t/${tenant}/items/${id}`, change),
    clear: (tenant: string) =>
      call<{ tenant: string; removed: number; error?: string }>('POST', `/admin/tenants/${tenant}/clear`),
    stats: async () => (await call<ServiceStats>('GET', '/stats')).body,
    call,
  }
}

/** The tenant's keys in Redis (under the RedisLayer prefix) and in this process's memory layer. */
export async function cachedKeys(
  service: TenantService,
  redis: Redis,
  tenant: string,
): Promise<{ redis: string[]; memory: string[] }> {
  const scope = `tenant:${tenant}:`
  const found: string[] = []
  const pattern = scanPattern(service.cachePrefix + scope)
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    found.push(...keys.map((key) => key.slice(service.cachePrefix.length)))
  } while (cursor !== '0')
  const memory = [...service.memory.keys()].filter((key) => key.startsWith(scope))
  return { redis: found.sort(), memory: memory.sort() }
}

export interface StorySummary {
  /** Item 1 as each tenant's GET answered it. */
  readonly acmeItem1: string
  readonly globexItem1: string
  /** Keys of each tenant before the clear of acme (Redis, memory). */
  readonly keysBefore: Readonly<Record<string, { redis: string[]; memory: string[] }>>
  /** After acme's rename of item 1: acme's answer and globex's (untouched). */
  readonly acmeItem1Renamed: string
  readonly globexItem1AfterRename: string
  readonly cleared: number
  readonly keysAfter: Readonly<Record<string, { redis: string[]; memory: string[] }>>
  /** Reading globex's whole catalog again after acme was cleared: queries and memory hits. */
  readonly globexQueriesAfterClear: number
  readonly globexMemoryHitsAfterClear: number
  /** Reading acme's catalog again: it reloads. */
  readonly acmeQueriesAfterClear: number
  /** The status a request with the tenant id `acme:item` got. */
  readonly malformedTenantStatus: number
}

/**
 * Two tenants whose catalogs use the same ids: each reads its own, a write of one leaves the other alone,
 * clearing one tenant keeps the other's entries in memory and in Redis, and a malformed tenant id is
 * refused before it gets near the cache.
 */
export async function runTenantStory(
  service: TenantService,
  redis: Redis,
  log: (line: string) => void = console.log,
): Promise<StorySummary> {
  const api = tenantClient(service.url)
  const tenants = Object.keys(service.db.tenants)
  let last = await api.stats()
  const delta = async () => {
    const now = await api.stats()
    const change = {
      queries: now.db.reads - last.db.reads,
      memoryHits: (now.cache.layers[0]?.hits ?? 0) - (last.cache.layers[0]?.hits ?? 0),
    }
    last = now
    return change
  }
  const readCatalog = async (tenant: string) => {
    const { items } = (await api.items(tenant)).body
    for (const item of items) await api.item(tenant, item.id)
    return items
  }

  // 1. The same id in two tenants: two keys, two namespaces, each tenant's own row.
  const acme1 = (await api.item('acme', 1)).body
  const globex1 = (await api.item('globex', 1)).body
  log(
    `GET /t/acme/items/1 → "${acme1.name}"; GET /t/globex/items/1 → "${globex1.name}": the same id, ` +
      `cached as tenant:acme:item:1 and tenant:globex:item:1.`,
  )

  // 2. Both catalogs cached: the list and every item, in memory and in Redis.
  for (const tenant of tenants) await readCatalog(tenant)
  await delta()
  const keysBefore: Record<string, { redis: string[]; memory: string[] }> = {}
  for (const tenant of tenants) {
    keysBefore[tenant] = await cachedKeys(service, redis, tenant)
    log(
      `Tenant ${tenant}: ${keysBefore[tenant]!.redis.length} keys in Redis ` +
        `(${keysBefore[tenant]!.redis.join(', ')}), ${keysBefore[tenant]!.memory.length} in memory.`,
    )
  }

  // 3. A write by one tenant invalidates that tenant's keys only.
  await api.update('acme', 1, { name: 'Anvil (refurbished)' })
  const acmeRenamed = (await api.item('acme', 1)).body.name
  const globexAfter = (await api.item('globex', 1)).body.name
  log(
    `PUT /t/acme/items/1 renames acme's item 1: acme now reads "${acmeRenamed}", globex still ` +
      `"${globexAfter}" (from its cache, untouched).`,
  )
  await readCatalog('acme')
  await delta()

  // 4. Clear one tenant: invalidateByPrefix('') on its namespace.
  const cleared = await api.clear('acme')
  const keysAfter: Record<string, { redis: string[]; memory: string[] }> = {}
  for (const tenant of tenants) keysAfter[tenant] = await cachedKeys(service, redis, tenant)
  log(
    `POST /admin/tenants/acme/clear → ${cleared.body.removed} entries removed. Left in Redis: ` +
      tenants.map((t) => `${t} ${keysAfter[t]!.redis.length}`).join(', ') +
      '; in memory: ' +
      tenants.map((t) => `${t} ${keysAfter[t]!.memory.length}`).join(', ') +
      '.',
  )

  // 5. The other tenant is still served from memory; the cleared one reloads from PostgreSQL.
  await readCatalog('globex')
  const globex = await delta()
  log(
    `Globex's whole catalog again → ${globex.queries} PostgreSQL queries, ${globex.memoryHits} memory hits.`,
  )
  await readCatalog('acme')
  const acme = await delta()
  log(`Acme's whole catalog again → ${acme.queries} PostgreSQL queries: it was cleared, it reloads.`)

  // 6. A tenant id that would reach into another tenant's namespace is refused before the cache.
  const malformed = await api.item('acme:item', 1)
  log(
    `GET /t/acme:item/items/1 → ${malformed.status} (${malformed.body.error}). As a namespace, ` +
      `"tenant:acme:item:" would lie inside acme's "tenant:acme:".`,
  )
  log('No per-tenant generation bump: generations apply to the whole stack; a tenant is cleared by prefix.')
  return {
    acmeItem1: acme1.name,
    globexItem1: globex1.name,
    keysBefore,
    acmeItem1Renamed: acmeRenamed,
    globexItem1AfterRename: globexAfter,
    cleared: cleared.body.removed,
    keysAfter,
    globexQueriesAfterClear: globex.queries,
    globexMemoryHitsAfterClear: globex.memoryHits,
    acmeQueriesAfterClear: acme.queries,
    malformedTenantStatus: malformed.status,
  }
}
