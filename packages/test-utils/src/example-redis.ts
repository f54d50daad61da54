import { Redis } from 'ioredis'
import { startRedisServer } from './redis-server'

export interface DemoRedis {
  readonly client: Redis | undefined
  readonly description: string
  close(): Promise<void>
}

export interface ConnectOptions {
  readonly url?: string | undefined
  /** Whether to start a throwaway redis-server when no URL is given. Default true. */
  readonly spawn?: boolean
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
    try {
      await client.connect()
    } catch (error) {
      client.disconnect()
      throw new Error(`Cannot reach Redis at ${url} (REDIS_URL): ${(error as Error).message}`)
    }
    return {
      client,
      description: `Redis at ${url} (REDIS_URL)`,
      close: async () => void (await client.quit()),
    }
  }
  if (!spawn) return memoryOnly('not asked to start one')
  try {
    const server = await startRedisServer()
    const client = new Redis(server.url)
    return {
      client,
      description: `a throwaway redis-server on port ${server.port} (set REDIS_URL to use yours)`,
      close: async () => {
        await client.quit()
        await server.stop()
      },
    }
  } catch (error) {
    return memoryOnly((error as Error).message.split('\n')[0] ?? 'redis-server failed')
  }
}

function memoryOnly(reason: string): DemoRedis {
  return {
    client: undefined,
    description: `no Redis (${reason}): running on the memory layer alone`,
    close: async () => {},
  }
}
