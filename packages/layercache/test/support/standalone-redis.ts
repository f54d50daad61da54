import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'

/**
 * Registers hooks that give the test file the test Redis, and returns a factory of clients on it (each a
 * connection of its own, as another process's would be), all disconnected when the file ends.
 */
export function useStandaloneRedis(): { client: () => Redis; redis: () => TestRedis } {
  let redis: TestRedis
  const clients: Redis[] = []
  beforeAll(async () => {
    redis = await getTestRedis()
  })
  afterAll(async () => {
    for (const created of clients) created.disconnect()
    await redis.close()
  })
  return {
    client: () => {
      const created = redis.createClient()
      clients.push(created)
      return created
    },
    redis: () => redis,
  }
}
