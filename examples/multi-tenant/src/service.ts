import type { IncomingMessage, Server } from 'node:http'
import { closeServer, HttpError, jsonServer, listen, readJson } from '@layercache/test-utils/example-http'
import type { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, normalizePrefix, RedisLayer } from 'layercache'
import type { Item, ItemChange, TenantsDb } from './tenants-db'

export interface TenantServiceOptions {
  /** The Redis under the memory layer (you own the client: the service never closes it). */
  readonly redis: Redis
  readonly db: TenantsDb
  /** The RedisLayer prefix: every key the cache writes starts with it. */
  readonly cachePrefix: string
  /** Default 0: any free port. */
  readonly port?: number
}

export interface TenantService {
  readonly url: string
  readonly cache: CacheStack
  /** The memory layer (L1), to look at what this process holds. */
  readonly memory: MemoryLayer
  /** The RedisLayer prefix as used in Redis: tenant acme's `item:1` is `${cachePrefix}tenant:acme:item:1`. */
  readonly cachePrefix: string
  readonly db: TenantsDb
  readonly server: Server
  /** Stops listening and drops open connections (the Redis client and the pool stay open). */
  close(): Promise<void>
}

/** What GET /stats answers. */
export interface ServiceStats {
  readonly cache: ReturnType<CacheStack['getStats']>
  readonly db: { readonly reads: number }
}

/** The longest PUT body read, in characters. */
const MAX_BODY = 16_384

/**
 * What a tenant id may be: 1-32 of a-z, 0-9 and inner '-'. It becomes part of every cache key of the
 * tenant (`tenant:<id>:…`), so anything else is refused with 400 before the cache is touched. Above all
 * ':' — the namespace separator: tenant "acme:item" would get the namespace `tenant:acme:item:`, which
 * lies inside tenant acme's `tenant:acme:`: every key of it is also a key of acme (its `items` is acme's
 * `item:items`), and clearing it would remove acme's cached items (`tenant:acme:item:1` starts with
 * `tenant:acme:item:`). Glob and control characters, and over-long ids, never get that far either.
 */
export const TENANT_ID = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/

/**
 * The catalog service of many tenants: node:http, a CacheStack of memory (L1) over Redis (L2) in front of
 * PostgreSQL, and one cache namespace per tenant: `cache.namespace('tenant:<id>')`. Every key, tag,
 * prefix and pattern a namespace takes is scoped to it, so the handlers below use plain keys
 * (`item:1`) and can never reach another tenant's entries.
 *
 *   GET  /t/:tenant/items/:id                the tenant's item (cache-aside with getOrSet)
 *   GET  /t/:tenant/items                    the tenant's catalog, cached as one list
 *   PUT  /t/:tenant/items/:id                {"name"?, "stock"?}: UPDATE (committed), then invalidate
 *   POST /admin/tenants/:tenant/clear        drops every cached entry of that tenant, and only those
 *   GET  /stats                              cache.getStats() and the queries PostgreSQL answered
 *
 * There is no per-tenant "bump generation" route: generations are a CacheStack option and apply to the
 * whole stack. `bumpGeneration()` on a namespace view moves every tenant at once (the generation number
 * lives once in Redis for the layer prefix). Clearing one tenant is `invalidateByPrefix('')` on its
 * namespace, which removes its keys through the key index, on every layer.
 */
export async function startTenantService(options: TenantServiceOptions): Promise<TenantService> {
  const { db } = options
  const memory = new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })
  const cache = new CacheStack(
    [memory, new RedisLayer({ client: options.redis, prefix: options.cachePrefix, ttl: 3_600_000 })],
    { ttl: 600_000 },
  )

  /** The tenant's view of the cache. Only ever called with an id that passed TENANT_ID. */
  const tenantCache = (tenant: string) => cache.namespace(`tenant:${tenant}`)

  async function updateItem(tenant: string, id: number, change: ItemChange) {
    // The UPDATE is committed when update() resolves; only then is the cache invalidated, so a read that
    // misses afterwards finds the new row, and a load that read the old row before the commit is fenced
    // (it cannot write it back). See examples/http-postgres for the full argument.
    const item = await db.update(tenant, id, change)
    if (item === undefined) throw new HttpError(404, `tenant ${tenant} has no item ${id}`)
    await tenantCache(tenant).invalidate({ keys: [`item:${id}`, 'items'] })
    return item
  }

  async function route(request: IncomingMessage): Promise<[number, unknown]> {
    const { pathname } = new URL(request.url ?? '/', 'http://service')
    const method = request.method ?? 'GET'
    if (pathname === '/stats' && method === 'GET') {
      const stats: ServiceStats = { cache: cache.getStats(), db: { reads: db.reads } }
      return [200, stats]
    }
    // Put admin routes behind your own authentication; this example has none.
    const admin = /^\/admin\/tenants\/([^/]*)\/clear$/.exec(pathname)
    if (admin !== null && method === 'POST') {
      const tenant = tenantId(admin[1]!)
      // Every key under `tenant:<id>:`, in memory and in Redis; no other tenant's.
      const removed = await tenantCache(tenant).invalidateByPrefix('')
      return [200, { tenant, removed }]
    }
    const scoped = /^\/t\/([^/]*)\/items(?:\/([^/]*))?$/.exec(pathname)
    if (scoped !== null) {
      // Checked first: a malformed tenant id never reaches the cache, nor the database.
      const tenant = tenantId(scoped[1]!)
      const cache = tenantCache(tenant)
      if (scoped[2] === undefined) {
        if (method !== 'GET') throw new HttpError(405, `${method} is not allowed here`)
        return [200, { tenant, items: await cache.getOrSet('items', () => db.list(tenant)) }]
      }
      const id = Number(scoped[2])
      if (!Number.isSafeInteger(id) || id < 1) throw new HttpError(400, 'an item id is a positive integer')
      if (method === 'GET') {
        // Not found (undefined) is answered but not cached.
        const item = await cache.getOrSet<Item | undefined>(`item:${id}`, () => db.find(tenant, id))
        return item === undefined ? [404, { error: `tenant ${tenant} has no item ${id}` }] : [200, item]
      }
      if (method === 'PUT')
        return [200, await updateItem(tenant, id, parseChange(await readJson(request, MAX_BODY)))]
      throw new HttpError(405, `${method} is not allowed here`)
    }
    throw new HttpError(404, 'try GET /t/acme/items/1, /t/acme/items, POST /admin/tenants/acme/clear, /stats')
  }

  const server = jsonServer(route)
  const url = await listen(server, options.port)
  return {
    url,
    cache,
    memory,
    cachePrefix: normalizePrefix(options.cachePrefix),
    db,
    server,
    close: () => {
      const closed = closeServer(server)
      cache.close()
      return closed
    },
  }
}

/** The tenant id of a path segment, or a 400: decoded, then held to TENANT_ID. */
function tenantId(segment: string): string {
  let tenant: string
  try {
    tenant = decodeURIComponent(segment)
  } catch {
    throw new HttpError(400, 'not a valid tenant id')
  }
  if (!TENANT_ID.test(tenant)) {
    throw new HttpError(400, 'not a valid tenant id: 1-32 of a-z, 0-9 and inner -')
  }
  return tenant
}

/** The PUT body, checked before anything is written: {"name"?, "stock"?}. */
function parseChange(body: unknown): ItemChange {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'expected a JSON object')
  const { name, stock, ...rest } = body as Record<string, unknown>
  if (Object.keys(rest).length > 0) throw new HttpError(400, `unknown fields: ${Object.keys(rest)}`)
  if (name !== undefined && !(typeof name === 'string' && name.length > 0 && name.length <= 200))
    throw new HttpError(400, 'name is a string of 1-200 characters')
  if (stock !== undefined && !(Number.isSafeInteger(stock) && (stock as number) >= 0))
    throw new HttpError(400, 'stock is a non-negative integer')
  if (name === undefined && stock === undefined) throw new HttpError(400, 'nothing to change')
  return {
    ...(name === undefined ? {} : { name: name as string }),
    ...(stock === undefined ? {} : { stock: stock as number }),
  }
}
