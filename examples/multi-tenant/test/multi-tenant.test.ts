import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { connectPostgres } from '@layercache/test-utils/example-postgres'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTenantService, type TenantService } from '../src/service'
import { cachedKeys, runTenantStory, tenantClient } from '../src/story'
import { TenantsDb } from '../src/tenants-db'

let redis: TestRedis
let client: Redis
let pool: pg.Pool
const services: TenantService[] = []

beforeAll(async () => {
  // PostgreSQL: DATABASE_URL, else postgres@127.0.0.1:5432/test; an unreachable server fails the file loudly.
  pool = await connectPostgres()
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(async () => {
  for (const service of services) {
    await service.close()
    await service.db.drop()
  }
  await pool?.end()
  await redis?.close()
})

/** A service on a table and a cache prefix of its own, so tests (and test files) never share state. */
async function start(): Promise<TenantService> {
  const name = `${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  const db = new TenantsDb(pool, `tenant_example_${name}`)
  await db.createAndSeed()
  const service = await startTenantService({ redis: client, db, cachePrefix: `${redis.keyPrefix}${name}` })
  services.push(service)
  return service
}

/** Every key the service's cache holds in Redis (entries and the layer's own index keys). */
async function allRedisKeys(service: TenantService): Promise<string[]> {
  return (await client.keys(`${service.cachePrefix}*`)).sort()
}

// Generous: the suite shares the machine with every other test file (no timing is asserted).
describe('examples/multi-tenant', { timeout: 60_000 }, () => {
  it('tells the story: own data per tenant, one tenant cleared, a malformed id refused', async () => {
    const service = await start()
    const lines: string[] = []
    const summary = await runTenantStory(service, client, (line) => lines.push(line))

    expect(summary.acmeItem1).toBe('Anvil')
    expect(summary.globexItem1).toBe('Doomsday device')
    expect(summary.acmeItem1Renamed).toBe('Anvil (refurbished)')
    expect(summary.globexItem1AfterRename).toBe('Doomsday device')
    expect(summary.keysBefore.acme?.redis).toHaveLength(5)
    expect(summary.keysBefore.globex?.redis).toHaveLength(4)
    expect(summary.cleared).toBe(5)
    expect(summary.keysAfter.acme).toEqual({ redis: [], memory: [] })
    expect(summary.keysAfter.globex).toEqual(summary.keysBefore.globex)
    expect(summary.globexQueriesAfterClear).toBe(0)
    expect(summary.globexMemoryHitsAfterClear).toBe(4)
    expect(summary.acmeQueriesAfterClear).toBe(5)
    expect(summary.malformedTenantStatus).toBe(400)
    expect(lines.length).toBe(9)
  })

  it('never mixes tenants up: the same id in two tenants answers each its own row', async () => {
    const service = await start()
    const api = tenantClient(service.url)
    for (let round = 0; round < 2; round++) {
      // Round 0 loads (misses), round 1 answers from the cache: both must give each tenant its own row.
      for (const id of [1, 2, 3]) {
        const [acme, globex] = await Promise.all([api.item('acme', id), api.item('globex', id)])
        expect(acme.body).toEqual(await service.db.find('acme', id))
        expect(globex.body).toEqual(await service.db.find('globex', id))
        expect(acme.body.name).not.toBe(globex.body.name)
      }
    }
    expect((await api.items('acme')).body.items.map((item) => item.tenant)).toEqual(Array(4).fill('acme'))
    expect((await api.items('globex')).body.items.map((item) => item.tenant)).toEqual(Array(3).fill('globex'))
    // acme has an item 4, globex does not: globex's miss must not find acme's entry.
    expect((await api.item('acme', 4)).status).toBe(200)
    expect((await api.item('globex', 4)).status).toBe(404)

    // A write by acme changes acme's answer only; globex's entry stays cached and unchanged.
    const before = await api.stats()
    await api.update('acme', 2, { stock: 0 })
    expect((await api.item('acme', 2)).body.stock).toBe(0)
    expect((await api.item('globex', 2)).body.stock).toBe(20)
    const after = await api.stats()
    // One reload for acme's item 2 (a plain PUT is not a read); globex was a memory hit.
    expect(after.db.reads - before.db.reads).toBe(1)
    expect(after.cache.layers[0]!.hits - before.cache.layers[0]!.hits).toBe(1)
  })

  it("clears exactly one tenant: the other's entries stay in memory and in Redis", async () => {
    const service = await start()
    const api = tenantClient(service.url)
    const warm = async (tenant: string, ids: number[]) => {
      await api.items(tenant)
      for (const id of ids) await api.item(tenant, id)
    }
    await warm('acme', [1, 2, 3, 4])
    await warm('globex', [1, 2, 3])
    const globexBefore = await cachedKeys(service, client, 'globex')
    expect(globexBefore.redis).toEqual([
      'tenant:globex:item:1',
      'tenant:globex:item:2',
      'tenant:globex:item:3',
      'tenant:globex:items',
    ])
    expect(globexBefore.memory).toEqual(globexBefore.redis)
    expect((await cachedKeys(service, client, 'acme')).redis).toHaveLength(5)
    const globexValuesBefore = await client.mget(globexBefore.redis.map((key) => service.cachePrefix + key))

    const cleared = await api.clear('acme')
    expect(cleared.body).toEqual({ tenant: 'acme', removed: 5 })

    // Acme is gone from both layers; globex's keys are all there, with the same stored values.
    expect(await cachedKeys(service, client, 'acme')).toEqual({ redis: [], memory: [] })
    expect(await cachedKeys(service, client, 'globex')).toEqual(globexBefore)
    expect(await client.mget(globexBefore.redis.map((key) => service.cachePrefix + key))).toEqual(
      globexValuesBefore,
    )

    // Globex is still answered from memory, without a query; acme misses and reloads.
    let stats = await api.stats()
    await warm('globex', [1, 2, 3])
    let now = await api.stats()
    expect(now.cache.layers[0]!.hits - stats.cache.layers[0]!.hits).toBe(4)
    expect(now.cache.misses - stats.cache.misses).toBe(0)
    expect(now.db.reads - stats.db.reads).toBe(0)
    stats = now
    await warm('acme', [1, 2, 3, 4])
    now = await api.stats()
    expect(now.cache.misses - stats.cache.misses).toBe(5)
    expect(now.db.reads - stats.db.reads).toBe(5)

    // Clearing a tenant with nothing cached removes nothing of anyone else's.
    expect((await api.clear('initech')).body.removed).toBe(0)
    expect(await cachedKeys(service, client, 'globex')).toEqual(globexBefore)
  })

  it('rejects malformed tenant ids with 400 before touching the cache or the database', async () => {
    const service = await start()
    const api = tenantClient(service.url)
    await api.item('acme', 1) // something cached, so "nothing changed" means something
    const statsBefore = JSON.stringify(service.cache.getStats())
    const readsBefore = service.db.reads
    const keysBefore = await allRedisKeys(service)
    const memoryBefore = [...service.memory.keys()]
    const events: string[] = []
    for (const name of ['hit', 'miss', 'set', 'delete', 'load', 'invalidate'] as const) {
      service.cache.on(name, () => events.push(name))
    }

    const malformed = [
      'acme:item', // would be a namespace inside acme's
      'ACME',
      'acme*',
      '*',
      'a%3Fb', // a?b
      '-acme',
      'acme-',
      'a'.repeat(33),
      '%E2%9C%93', // ✓
      'acme%3Aitem', // the ':' percent-encoded
      '%ZZ', // not valid percent-encoding
      '%00',
      '',
    ]
    for (const tenant of malformed) {
      expect((await api.item(tenant, 1)).status, tenant).toBe(400)
      expect((await api.items(tenant)).status, tenant).toBe(400)
      expect((await api.update(tenant, 1, { stock: 1 })).status, tenant).toBe(400)
      expect((await api.clear(tenant)).status, tenant).toBe(400)
    }

    expect(events).toEqual([])
    expect(JSON.stringify(service.cache.getStats())).toBe(statsBefore)
    expect(service.db.reads).toBe(readsBefore)
    expect(await allRedisKeys(service)).toEqual(keysBefore)
    expect([...service.memory.keys()]).toEqual(memoryBefore)
    expect((await api.item('acme', 1)).body.name).toBe('Anvil')
  })
})
