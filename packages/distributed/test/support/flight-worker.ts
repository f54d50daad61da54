// One app instance in its own process, for the multi-process single-flight tests: a CacheStack (memory over
// Redis) with a RedisSingleFlightCoordinator on connections of its own. Its loaders count their calls in
// Redis (INCR `<prefix>loads`), so the test sees every call in every process.
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Cluster, Redis } from 'ioredis'
import { RedisSingleFlightCoordinator } from '../../src'

export interface FlightWorkerInit {
  /** Standalone: the URL. */
  readonly redisUrl?: string
  /** Cluster: the startup nodes. */
  readonly clusterNodes?: readonly { host: string; port: number }[]
  readonly prefix: string
  /** Undefined: the coordinator's default. */
  readonly leaseMs: number | undefined
  readonly waitTimeoutMs: number | undefined
  readonly pollMs: number
}

const api = async (init: FlightWorkerInit, emit: (event: string, data?: unknown) => void) => {
  const client =
    init.clusterNodes !== undefined ? new Cluster([...init.clusterNodes]) : new Redis(init.redisUrl!)
  client.on('error', () => {})
  const coordinator = new RedisSingleFlightCoordinator({
    client,
    prefix: `${init.prefix}sf:`,
    ...(init.leaseMs === undefined ? {} : { leaseMs: init.leaseMs }),
    ...(init.waitTimeoutMs === undefined ? {} : { waitTimeoutMs: init.waitTimeoutMs }),
    pollMs: init.pollMs,
  })
  const stack = new CacheStack(
    [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix: init.prefix })],
    {
      singleFlightCoordinator: coordinator,
    },
  )
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  let pending: Promise<unknown[]> | undefined
  const counted = async () => {
    await client.incr(`${init.prefix}loads`)
    emit('loading', process.pid)
  }
  return {
    /** Starts `count` concurrent getOrSet calls of `key`, whose loader waits for open(); returns at once. */
    start(key: string, count: number): void {
      const loader = async () => {
        await counted()
        await opened
        return { key, loadedBy: process.pid }
      }
      pending = Promise.all(Array.from({ length: count }, () => stack.getOrSet(key, loader)))
      pending.catch(() => {}) // collected by results()
    },
    open(): void {
      open()
    },
    results: () => pending,
    /** A getOrSet whose loader never finishes: this process holds the lease until it dies. */
    hang(key: string): void {
      stack.getOrSet(key, () => counted().then(() => new Promise<never>(() => {}))).catch(() => {})
    },
    stats: () => ({ stack: stack.getStats(), coordinator: coordinator.stats }),
    /** One write through the stack: this process's first use of the layer is behind it. */
    async warm(): Promise<void> {
      await stack.set(`warm-up:${process.pid}`, 1)
    },
    async close() {
      stack.close()
      await coordinator.close()
      client.disconnect()
    },
  }
}

export type FlightWorkerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
