/**
 * Redis paused (SIGSTOP) or killed, on a server this file starts (single target by nature): L1 hits still
 * answer, getOrLoadEntity falls back to the loader, every other call rejects with a typed LayerCacheError
 * instead of hanging, and the engine works again once Redis is back.
 */
import { LayerCacheError } from '@layercache/core'
import { connectionLost, type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import { type Post, post, schemas } from './support/fixtures'

const TIMEOUT = 300
/** Far above TIMEOUT: only tells "settled" from "hung", never how fast. */
const HANG = 5_000

async function settled<T>(promise: Promise<T>): Promise<'hung' | { value: T } | { error: unknown }> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), HANG)
  })
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      hung,
    ])
  } finally {
    clearTimeout(timer)
  }
}

let server: RedisServerHandle
let client: Redis
let cache: EntityCache

beforeEach(async () => {
  server = await startRedisServer()
  client = new Redis(server.url) // default ioredis: reconnects, queues commands offline
  client.on('error', () => {})
  await client.ping()
  cache = new EntityCache({ redis: client, keyPrefix: 'faults', commandTimeout: TIMEOUT, ...schemas() })
  await cache.setEntity('post', post(1))
  await cache.getListPage('feed', { userId: 1 }, { load: () => [post(1), post(2)] })
  await cache.setList('userPosts', { userId: 1 }, [post(1)])
  // Warm this instance's L1.
  expect(await cache.getEntity('post', 1)).toEqual(post(1))
  expect((await cache.getListPage<Post>('feed', { userId: 1 }))?.items).toHaveLength(2)
  expect(await cache.getList('userPosts', { userId: 1 })).toEqual([post(1)])
})

afterEach(async () => {
  cache.close()
  client.disconnect()
  await server.stop()
})

/** Every call that needs Redis: each must reject with a LayerCacheError (none may hang or succeed). */
const needRedis = (): Record<string, () => Promise<unknown>> => ({
  getEntity: () => cache.getEntity('post', 50),
  getEntities: () => cache.getEntities('post', [1, 51]),
  setEntity: () => cache.setEntity('post', post(52)),
  updateEntityIfExists: () => cache.updateEntityIfExists('post', post(1, 1, 1, 'new')),
  invalidateEntity: () => cache.invalidateEntity('post', 1),
  getListPage: () => cache.getListPage('feed', { userId: 2 }, { load: () => [post(3, 2)] }),
  addToList: () => cache.addToList('feed', { userId: 1 }, post(4)),
  removeFromList: () => cache.removeFromList('feed', { userId: 1 }, 2),
  getList: () => cache.getList('userPosts', { userId: 2 }),
  setList: () => cache.setList('userPosts', { userId: 1 }, []),
  deleteList: () => cache.deleteList('userPosts', { userId: 1 }),
  clearAllCache: () => cache.clearAllCache({ confirm: 'YES_WIPE_ALL' }),
})

async function expectDegraded() {
  // L1 hits answer.
  expect(await settled(cache.getEntity('post', 1))).toEqual({ value: post(1) })
  expect(await settled(cache.getList('userPosts', { userId: 1 }))).toEqual({ value: [post(1)] })
  // Misses that have a loader answer from it.
  expect(await settled(cache.getOrLoadEntity('post', 60, () => post(60)))).toEqual({ value: post(60) })
  expect(await settled(cache.getOrLoadList('userPosts', { userId: 9 }, () => [post(9)]))).toEqual({
    value: [post(9)],
  })
  for (const [name, call] of Object.entries(needRedis())) {
    const outcome = await settled(call())
    expect(outcome, name).not.toBe('hung')
    expect((outcome as { error?: unknown }).error, name).toBeInstanceOf(LayerCacheError)
  }
  // The failed invalidation still dropped this instance's copies: no stale row is answered.
  expect(await settled(cache.getEntity('post', 1))).not.toEqual({ value: post(1) })
}

async function expectRecovered() {
  await client.ping()
  expect(await cache.invalidateEntity('post', 2)).toBeGreaterThanOrEqual(1)
  expect(await cache.getOrLoadEntity('post', 70, () => post(70))).toEqual(post(70))
  expect(await client.exists('faults:e:{post:70}')).toBe(1)
}

describe('entities with Redis paused (SIGSTOP: connection open, no answers)', () => {
  it('L1 hits answer, loaders stand in, everything else rejects typed within the command timeout', {
    timeout: 30_000,
  }, async () => {
    server.pause()
    try {
      await expectDegraded()
    } finally {
      server.resume()
    }
    await expectRecovered()
  })
})

describe('entities with Redis killed', () => {
  it('L1 hits answer, loaders stand in, everything else rejects typed at once; back after a restart', {
    timeout: 30_000,
  }, async () => {
    await server.kill()
    await connectionLost(client) // ioredis noticed the closed socket
    await expectDegraded()
    await server.restart()
    await new Promise<void>((resolve) =>
      client.status === 'ready' ? resolve() : client.once('ready', resolve),
    )
    await cache.setEntity('post', post(2))
    await expectRecovered()
  })
})
