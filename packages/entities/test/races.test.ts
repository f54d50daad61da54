/**
 * Races of the entity engine, on standalone and Cluster, across instances on connections of their own (and
 * two forked processes): adds against invalidations, list rebuilds against invalidations and adds, loads
 * against invalidations and writes, updates against invalidations. Whatever interleaving happens, after an
 * invalidation resolved the row is in no list it was registered in before, and no stale row is written.
 */
import { duplicateClient } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { forkWorker, type WorkerHandle } from '@layercache/test-utils/worker-process'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { EntityCache, type EntityCacheOptions } from '../src'
import {
  type AddOutcome,
  type AnyClient,
  adder,
  type Connection,
  gate,
  type Post,
  post,
  redisKeys,
  type SchemaOptions,
  schemas,
  sleep,
  spyScripts,
} from './support/fixtures'
import type { RaceWorkerApi } from './support/race-worker'

const WORKER = new URL('./support/race-worker.ts', import.meta.url)

// Forked while the file's Redis and Cluster start (it connects on its first call).
let raceWorker: Promise<WorkerHandle<RaceWorkerApi>>
beforeAll(() => {
  raceWorker = forkWorker<RaceWorkerApi>(WORKER, undefined)
  raceWorker.catch(() => {})
})
afterAll(async () => {
  await (await raceWorker.catch(() => undefined))?.stop()
})
const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]

let cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const random = (max: number) => Math.floor(Math.random() * (max + 1))
const ids = (page: { items: readonly Post[] } | undefined) => page?.items.map((row) => row.id)

/** Two instances on connections of their own, one prefix (no bus: each has its own L1). */
function pair(target: Target, schema: SchemaOptions = {}, overrides: Partial<EntityCacheOptions> = {}) {
  const keyPrefix = redis.prefix(target, 'race')
  const open = () => {
    const client = duplicateClient(redis.client(target))
    client.on('error', () => {})
    const cache = new EntityCache({ redis: client, keyPrefix, ...schemas(schema), ...overrides })
    cleanups.push(() => {
      cache.close()
      client.disconnect()
    })
    return cache
  }
  const a = open()
  const b = open()
  return { a, b, open, client: redis.client(target), keys: redisKeys(a.keyPrefix) }
}

function connectionOf(target: Target): Connection {
  const client = redis.client(target)
  if (target === 'cluster') {
    const nodes = (client as Cluster).nodes('master')
    return { clusterNodes: nodes.map((node) => ({ host: node.options.host!, port: node.options.port! })) }
  }
  const { host, port, password, db } = (client as Redis).options
  const auth = password ? `:${encodeURIComponent(password)}@` : ''
  return { redisUrl: `redis://${auth}${host}:${port}/${db ?? 0}` }
}

describe.each(TARGETS)('races on %s', (target) => {
  it('addToList from another process and instance racing invalidateEntity: a registered add never stays', {
    timeout: 60_000,
  }, async () => {
    const keyPrefix = redis.prefix(target, 'race')
    const open = () => {
      const client = duplicateClient(redis.client(target)) as AnyClient
      client.on('error', () => {})
      const cache = new EntityCache({ redis: client, keyPrefix, ...schemas() })
      cleanups.push(() => {
        cache.close()
        client.disconnect()
      })
      return { cache, client }
    }
    const { cache, client } = open()
    let invalidationEpoch: number | undefined
    spyScripts(client, ({ script, reply }) => {
      const answer = reply as unknown[]
      if (script === 'INVALIDATE_ENTITY' && Number(answer[0]) === 1) invalidationEpoch = Number(answer[3])
    })
    const local = open()
    const addHere = adder(local.cache, local.client)
    const worker = await raceWorker
    const connection = connectionOf(target)
    const keys = redisKeys(cache.keyPrefix)
    const users = [1, 2, 3, 4, 5, 6, 7, 8]
    for (const userId of users) {
      await cache.getListPage('feed', { userId }, { load: () => [post(1, userId, 1)] })
    }
    const ID = 77
    const inList = async (userId: number) =>
      (await client.zscore(keys.list('feed', `userId=${userId}`), `${ID}`)) !== null
    let before = 0
    let after = 0
    for (let round = 0; round < 50; round++) {
      await cache.invalidateEntity('post', ID)
      for (const userId of users) expect(await inList(userId)).toBe(false)

      const adds = [
        worker.call('add', connection, cache.keyPrefix, ID, users.slice(0, 4), 2),
        addHere(ID, users.slice(4), 3),
      ]
      const reads = users.slice(0, 2).map((userId) => cache.getListPage<Post>('feed', { userId }))
      await sleep(random(4))
      invalidationEpoch = undefined
      await cache.invalidateEntity('post', ID)
      const epoch = invalidationEpoch
      expect(epoch).toBeDefined()
      const outcomes: AddOutcome[] = (await Promise.all(adds)).flat()
      await Promise.all(reads)

      for (const { userId, epoch: registered } of outcomes) {
        if (registered > epoch!) {
          after++ // registered after the invalidation: it may stay
          continue
        }
        before++
        expect(await inList(userId), `round ${round}: list ${userId}`).toBe(false)
        expect(ids(await cache.getListPage<Post>('feed', { userId }))).not.toContain(ID)
      }
    }
    // Both orders happened (else the race was not one).
    expect(before).toBeGreaterThan(0)
    expect(after).toBeGreaterThan(0)
  })

  it('a list rebuild racing invalidateEntity of a row its load returned does not keep the row', async () => {
    for (const invalidator of ['same', 'other'] as const) {
      const { a, b, client, keys } = pair(target)
      const db = new Map([1, 2].map((id) => [id, post(id, 1, id * 10)]))
      const entered = gate()
      const release = gate()
      const load = async () => {
        const rows = [...db.values()]
        entered.open()
        await release.promise
        return rows
      }
      const page = a.getListPage<Post>('feed', { userId: 1 }, { load })
      await entered.promise
      db.delete(2)
      await (invalidator === 'same' ? a : b).invalidateEntity('post', 2)
      release.open()
      expect(ids(await page)).toEqual([2, 1]) // the loader's answer, returned but not cached
      expect(await client.exists(keys.loaded('feed', 'userId=1'))).toBe(0)
      expect(await client.zscore(keys.list('feed', 'userId=1'), '2')).toBeNull()
      expect(await client.exists(keys.row(2))).toBe(0)
      const reload = { load: () => [...db.values()] }
      const reader = invalidator === 'same' ? a : b
      expect(ids(await reader.getListPage<Post>('feed', { userId: 1 }, reload))).toEqual([1])
      expect(await client.zscore(keys.list('feed', 'userId=1'), '1')).toBe('10')
    }
  })

  it('list rebuilds racing invalidateEntity, random interleavings (40 rounds)', async () => {
    const { a, b, client, keys } = pair(target)
    for (let round = 0; round < 40; round++) {
      const userId = 100 + round
      const db = new Map([1, 2, 3].map((id) => [id, post(id, userId, id)]))
      const load = async () => {
        await sleep(random(2))
        const rows = [...db.values()]
        await sleep(random(3))
        return rows
      }
      const invalidator = round % 2 === 0 ? a : b
      const rebuild = a.getListPage<Post>('feed', { userId }, { load })
      await sleep(random(4))
      db.delete(2)
      await invalidator.invalidateEntity('post', 2)
      await rebuild
      expect(await client.zscore(keys.list('feed', `userId=${userId}`), '2'), `round ${round}`).toBeNull()
      expect(await client.exists(keys.row(2))).toBe(0)
      const reload = { load: () => [...db.values()] }
      expect(ids(await invalidator.getListPage<Post>('feed', { userId }, reload))).toEqual([3, 1])
      // The next round's row 2 is a new one.
      await a.invalidateEntity('post', 2)
    }
  })

  it('a list rebuild racing addToList is not written, so the add is not lost', async () => {
    const { a, client, keys } = pair(target)
    const db = new Map([[1, post(1, 1, 10)]])
    const entered = gate()
    const release = gate()
    const load = async () => {
      const rows = [...db.values()]
      entered.open()
      await release.promise
      return rows
    }
    const page = a.getListPage<Post>('feed', { userId: 1 }, { load })
    await entered.promise
    db.set(3, post(3, 1, 30))
    expect(await a.addToList('feed', { userId: 1 }, post(3, 1, 30))).toBe(false) // not cached yet
    release.open()
    expect(ids(await page)).toEqual([1])
    expect(await client.exists(keys.loaded('feed', 'userId=1'))).toBe(0) // fenced: not written
    const reload = { load: () => [...db.values()] }
    expect(ids(await a.getListPage<Post>('feed', { userId: 1 }, reload))).toEqual([3, 1])
    expect(await client.zscore(keys.list('feed', 'userId=1'), '3')).toBe('30')
  })

  it('list rebuilds racing addToList, random interleavings: the added row is never lost (40 rounds)', async () => {
    const { a, b, client, keys } = pair(target)
    for (let round = 0; round < 40; round++) {
      const userId = 200 + round
      const db = new Map([1, 2].map((id) => [id, post(id, userId, id)]))
      const load = async () => {
        await sleep(random(2))
        const rows = [...db.values()]
        await sleep(random(3))
        return rows
      }
      const writer = round % 2 === 0 ? a : b
      const rebuild = a.getListPage<Post>('feed', { userId }, { load })
      await sleep(random(4))
      const row = post(10 + round, userId, 100)
      db.set(row.id, row)
      await writer.addToList('feed', { userId }, row)
      await rebuild
      const list = `userId=${userId}`
      if ((await client.exists(keys.loaded('feed', list))) === 1) {
        expect(await client.zscore(keys.list('feed', list), `${row.id}`), `round ${round}`).toBe('100')
      }
      const reload = { load: () => [...db.values()] }
      expect(ids(await writer.getListPage<Post>('feed', { userId }, reload))).toEqual([row.id, 2, 1])
    }
  })

  it('getOrLoadEntity with a slow loader racing invalidateEntity does not write the stale row', async () => {
    for (const invalidator of ['same', 'other'] as const) {
      const { a, b, client, keys } = pair(target)
      const entered = gate()
      const release = gate()
      const loaded = a.getOrLoadEntity<Post>('post', 5, async () => {
        entered.open()
        await release.promise
        return post(5, 1, 5, 'stale')
      })
      await entered.promise
      expect(await (invalidator === 'same' ? a : b).invalidateEntity('post', 5)).toBe(0)
      release.open()
      expect(await loaded).toMatchObject({ title: 'stale' }) // the loader's answer, not cached
      expect(await client.exists(keys.row(5))).toBe(0)
      if (invalidator === 'same') expect(await a.getEntity('post', 5)).toBeUndefined()
    }
  })

  it('getOrLoadEntity with a slow loader racing a write keeps the write', async () => {
    for (const writer of ['setEntity', 'updateEntityIfExists'] as const) {
      const { a, b, client, keys } = pair(target)
      const entered = gate()
      const release = gate()
      const loaded = a.getOrLoadEntity<Post>('post', 6, async () => {
        entered.open()
        await release.promise
        return post(6, 1, 6, 'stale')
      })
      await entered.promise
      if (writer === 'setEntity') await b.setEntity('post', post(6, 1, 6, 'fresh'))
      // Not cached: nothing to refresh, but a load that began earlier must not cache its older row.
      else expect(await b.updateEntityIfExists('post', post(6, 1, 6, 'fresh'))).toBe(false)
      release.open()
      await loaded
      const stored = await client.get(keys.row(6))
      if (writer === 'setEntity') expect(JSON.parse(stored!)).toMatchObject({ title: 'fresh' })
      else expect(stored).toBeNull()
      expect(await b.getEntity<Post>('post', 6)).toEqual(
        writer === 'setEntity' ? post(6, 1, 6, 'fresh') : undefined,
      )
    }
  })

  it('getEntities with a slow schema load racing invalidateEntity does not write the stale rows', async () => {
    const entered = gate()
    const release = gate()
    const { a, b, client, keys } = pair(
      target,
      {},
      {
        entities: {
          post: {
            id: 'id',
            ttl: 60_000,
            load: async (wanted) => {
              entered.open()
              await release.promise
              return wanted.map((id) => post(Number(id), 1, 1, 'stale'))
            },
          },
        },
      },
    )
    const rows = a.getEntities<Post>('post', [1, 2, 3])
    await entered.promise
    await b.invalidateEntity('post', 2)
    release.open()
    expect((await rows).map((row) => row?.id)).toEqual([1, 2, 3])
    expect(await client.exists(keys.row(1))).toBe(1)
    expect(await client.exists(keys.row(2))).toBe(0)
    expect(await client.exists(keys.row(3))).toBe(1)
  })

  it('updateEntityIfExists racing invalidateEntity never resurrects the row (100 rounds)', {
    timeout: 30_000,
  }, async () => {
    const { a, b, client, keys } = pair(target)
    await a.getListPage('feed', { userId: 1 }, { load: () => [post(1, 1, 1)] })
    const list = keys.list('feed', 'userId=1')
    let updated = 0
    for (let round = 0; round < 100; round++) {
      await a.addToList('feed', { userId: 1 }, post(9, 1, round))
      expect(await client.zscore(list, '9')).toBe(`${round}`)
      const [wasCached] = await Promise.all([
        sleep(random(2)).then(() => a.updateEntityIfExists('post', post(9, 1, round + 1000, 'updated'))),
        sleep(random(2)).then(() => b.invalidateEntity('post', 9)),
      ])
      if (wasCached) updated++
      expect(await client.exists(keys.row(9), keys.members(9)), `round ${round}`).toBe(0)
      expect(await client.zscore(list, '9')).toBeNull()
      expect(await a.getEntity('post', 9)).toBeUndefined()
      expect(ids(await b.getListPage<Post>('feed', { userId: 1 }))).toEqual([1])
    }
    expect(updated).toBeGreaterThan(0)
    expect(updated).toBeLessThan(100)
  })
})
