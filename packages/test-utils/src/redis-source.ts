import { RedisUnavailableForTestsError } from './errors'
import { findRedisServer } from './executables'
import { testcontainersUnavailableReason } from './testcontainers'

export type RedisSource = 'REDIS_URL' | 'redis-server' | 'testcontainers'

export type DetectedRedisSource =
  | { readonly source: 'REDIS_URL'; readonly url: string }
  | { readonly source: 'redis-server'; readonly binary: string }
  | { readonly source: 'testcontainers' }

/**
 * Where test Redis comes from, in order: REDIS_URL, a redis-server binary on PATH, testcontainers
 * (only if it imports and Docker answers). Throws RedisUnavailableForTestsError when none works.
 */
export async function detectRedisSource(): Promise<DetectedRedisSource> {
  const url = process.env.REDIS_URL?.trim()
  if (url) return { source: 'REDIS_URL', url }
  const binary = findRedisServer()
  if (binary !== undefined) return { source: 'redis-server', binary }
  const reason = await testcontainersUnavailableReason()
  if (reason === undefined) return { source: 'testcontainers' }
  throw new RedisUnavailableForTestsError(
    'No Redis is available for tests: REDIS_URL is not set, there is no redis-server on PATH, ' +
      `and testcontainers cannot be used (${reason}).`,
  )
}
