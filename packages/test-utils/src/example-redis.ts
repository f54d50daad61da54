import { Redis } from 'ioredis'
import { startRedisServer } from './redis-server'

export interface DemoRedis {
  readonly client: Redis | undefined
  readonly description: string
  /**
   * Removes every key under `prefix` when close() runs (before the client quits), internal ones (index,
   * log, counters) included: an example run against a shared REDIS_URL leaves nothing behind. Use a
   * prefix only this run writes under.
   */
  removeOnClose(prefix: string): void
  /** Removes the keys of removeOnClose's prefixes, quits the client, stops a server we started. */
  close(): Promise<void>
}

export interface ConnectOptions {
  readonly url?: string | undefined
  /** Whether to start a throwaway redis-server when no URL is given. Default true. */
  readonly spawn?: boolean
}

/**
 * REDIS_URL points at a Redis that does not answer. The message is the whole story (which URL, the
 * connection error, what to do), so a runnable example prints it alone, without a stack.
 */
export class RedisUnreachableError extends Error {
  override readonly name = 'RedisUnreachableError'
}

/** The URL with its password hidden, for messages. */
export function shownUrl(url: string): string {
  return url.replace(/:\/\/([^:@/]*):[^@/]*@/, '://$1:***@')
}

/**
 * For the runnable examples: REDIS_URL if set, else a throwaway redis-server of our own, else none (the
 * example then runs on the memory layer alone and says so).
 */
export async function connectRedis({
  url = process.env.REDIS_URL,
  spawn = true,
}: ConnectOptions = {}): Promise<DemoRedis> {
  if (url) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    // connect() only rejects with "Connection is closed"; the 'error' event carries the cause. Without a
    // listener ioredis would print it as an unhandled error event, with a stack.
    let cause: Error | undefined
    client.on('error', (error: Error) => {
      cause ??= error
    })
    try {
      await client.connect()
    } catch (error) {
      client.disconnect()
      const reason = (cause ?? (error as Error)).message
      throw new RedisUnreachableError(
        `Cannot reach Redis at ${shownUrl(url)} (REDIS_URL): ${reason}. Start it, fix REDIS_URL, or unset ` +
          'it to use a throwaway redis-server.',
      )
    }
    return connected(client, `Redis at ${shownUrl(url)} (REDIS_URL)`, async () => {})
  }
  if (!spawn) return memoryOnly('not asked to start one')
  try {
    const server = await startRedisServer()
    return connected(
      new Redis(server.url),
      `a throwaway redis-server on port ${server.port} (set REDIS_URL to use yours)`,
      () => server.stop(),
    )
  } catch (error) {
    return memoryOnly((error as Error).message.split('\n')[0] ?? 'redis-server failed')
  }
}

function connected(client: Redis, description: string, stop: () => Promise<void>): DemoRedis {
  const prefixes = new Set<string>()
  return {
    client,
    description,
    removeOnClose: (prefix) => {
      if (prefix === '') throw new Error('removeOnClose needs a prefix: it would remove every key')
      prefixes.add(prefix)
    },
    close: async () => {
      try {
        for (const prefix of prefixes) await removePrefix(client, prefix)
      } finally {
        await client.quit().catch(() => client.disconnect())
        await stop()
      }
    },
  }
}

/** SCAN + UNLINK of every key starting with `prefix` (glob characters in it matched literally). */
export async function removePrefix(client: Redis, prefix: string): Promise<number> {
  const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`
  let removed = 0
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) removed += await client.unlink(...keys)
  } while (cursor !== '0')
  return removed
}

function memoryOnly(reason: string): DemoRedis {
  return {
    client: undefined,
    description: `no Redis (${reason}): running on the memory layer alone`,
    removeOnClose: () => {},
    close: async () => {},
  }
}
