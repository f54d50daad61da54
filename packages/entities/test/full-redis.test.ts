import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'

// A Redis at maxmemory with noeviction refuses every command that needs memory: invalidating a row
// frees some, and must work then (the stale row would otherwise be served until its TTL).

let server: RedisServerHandle
let client: Redis

beforeAll(async () => {
  server = await startRedisServer({ args: ['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction'] })
  client = new Redis(server.url)
})
afterAll(async () => {
  client?.disconnect()
  await server?.stop()
})

const options = (db: Map<number, { id: number; userId: number; v: number }>) => ({
  redis: client,
  keyPrefix: 'full:',
  entities: {
    post: {
      id: 'id',
      ttl: 60_000,
      load: (ids: readonly (string | number)[]) => ids.map((id) => db.get(Number(id))!),
    },
  },
  lists: {
    feed: {
      kind: 'indexed' as const,
      entity: 'post',
      score: 'id',
      maxSize: 10,
      ttl: 60_000,
      trackMembership: true,
      load: ({ userId }: { userId?: unknown }) => [...db.values()].filter((row) => row.userId === userId),
    },
  },
})

describe('EntityCache on a full Redis (maxmemory, noeviction)', () => {
  it('invalidateEntity still removes the row: the next read loads the new one', async () => {
    const db = new Map([[1, { id: 1, userId: 7, v: 1 }]])
    const cache = new EntityCache(options(db))
    expect(await cache.getOrLoadEntity('post', 1)).toEqual({ id: 1, userId: 7, v: 1 })
    // The row in an indexed list too: the invalidation has lists to clean.
    expect((await cache.getListPage('feed', { userId: 7 }))?.items).toHaveLength(1)
    db.set(1, { id: 1, userId: 7, v: 2 })

    await client.setrange('filler', 16 * 1024 * 1024, 'x')
    try {
      await cache.invalidateEntity('post', 1)
    } finally {
      await client.del('filler')
    }
    expect(await cache.getOrLoadEntity('post', 1)).toEqual({ id: 1, userId: 7, v: 2 })
    expect(await new EntityCache(options(db)).getOrLoadEntity('post', 1)).toEqual({ id: 1, userId: 7, v: 2 })
  })
})
