import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { closeClient } from './close-client'
import { HOW_TO_INSTALL_REDIS_SERVER, RedisUnavailableForTestsError } from './errors'
import { findRedisServer } from './executables'
import { type RedisServerHandle, startRedisServer } from './redis-server'
import { detectRedisSource, type RedisSource } from './redis-source'
import { startRedisContainer } from './testcontainers'

export interface TestRedis {
  readonly url: string
  /** Unique per TestRedis, e.g. `t:1f2e3d4c5b6a:`; put every key under it so tests sharing a Redis never collide. */
  readonly keyPrefix: string
  /** The spawned server, for fault injection; undefined for REDIS_URL and testcontainers. */
  readonly server: RedisServerHandle | undefined
  readonly source: RedisSource
  /** A client for url, closed by close(). */
  createClient(opts?: RedisOptions): Redis
  /** Closes every client from createClient, then stops the server or container if we started one. */
  close(): Promise<void>
}

class TrackedTestRedis implements TestRedis {
  readonly keyPrefix = `t:${randomBytes(6).toString('hex')}:`
  readonly #clients = new Set<Redis>()
  #closed = false

  constructor(
    readonly url: string,
    readonly source: RedisSource,
    readonly server: RedisServerHandle | undefined,
    private readonly release: () => Promise<void>,
  ) {}

  createClient(opts?: RedisOptions): Redis {
    if (this.#closed) throw new Error('TestRedis.createClient() called after close()')
    const client = new Redis(this.url, { lazyConnect: false, ...opts })
    this.#clients.add(client)
    return client
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all([...this.#clients].map((client) => closeClient(client)))
    this.#clients.clear()
    await this.release()
  }
}

/** Always spawns a fresh redis-server, for tests that must own (pause, kill, restart) their server. */
export async function spawnTestRedis(): Promise<TestRedis> {
  if (findRedisServer() === undefined) {
    throw new RedisUnavailableForTestsError(
      'spawnTestRedis() needs a redis-server binary on PATH; REDIS_URL or Docker cannot stand in for it.',
      HOW_TO_INSTALL_REDIS_SERVER,
    )
  }
  const server = await startRedisServer()
  return new TrackedTestRedis(server.url, 'redis-server', server, () => server.stop())
}

/**
 * A Redis for one test file or test: REDIS_URL if set (never flushed), else a fresh redis-server per call,
 * else a testcontainers redis:7-alpine, else RedisUnavailableForTestsError.
 */
export async function getTestRedis(): Promise<TestRedis> {
  const detected = await detectRedisSource()
  switch (detected.source) {
    case 'REDIS_URL':
      return new TrackedTestRedis(detected.url, 'REDIS_URL', undefined, async () => {})
    case 'redis-server':
      return spawnTestRedis()
    case 'testcontainers': {
      const container = await startRedisContainer()
      return new TrackedTestRedis(container.url, 'testcontainers', undefined, () => container.stop())
    }
  }
}
