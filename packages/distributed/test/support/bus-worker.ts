// One app instance in its own process, for the multi-process bus tests: a CacheStack (memory over Redis)
// with a RedisInvalidationBus. Its bus subscriber may connect through a TCP proxy (`subscriberUrl`), so
// the test can cut or black-hole exactly that connection while the data connection keeps working. Its wall
// clock (Date.now) may be set off from the other processes' (`clockOffsetMs`, `shiftClock`).
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Cluster, Redis } from 'ioredis'
import { RedisInvalidationBus } from '../../src'

export interface BusWorkerInit {
  /** Standalone: the data connection's URL. */
  readonly redisUrl?: string
  /** Cluster: the startup nodes. */
  readonly clusterNodes?: readonly { host: string; port: number }[]
  /** Standalone: where the bus subscriber connects (a proxy); default redisUrl. */
  readonly subscriberUrl?: string
  readonly prefix: string
  readonly channel: string
  readonly signingSecret?: string
  readonly heartbeatMs: number
  readonly commandTimeout: number
  readonly broadcastL1Invalidation?: boolean
  /** How far this process's Date.now() is from the real clock, in ms (the monotonic clock is untouched). */
  readonly clockOffsetMs?: number
}

let clockOffsetMs = 0
const realNow = Date.now.bind(Date)
Date.now = () => realNow() + clockOffsetMs

function connect(init: BusWorkerInit, url: string | undefined, subscriber: boolean): Redis | Cluster {
  const retryStrategy = () => 50
  if (init.clusterNodes !== undefined) {
    return new Cluster([...init.clusterNodes], {
      shardedSubscribers: subscriber,
      clusterRetryStrategy: retryStrategy,
      redisOptions: { commandTimeout: subscriber ? undefined : init.commandTimeout },
    })
  }
  return new Redis(url!, {
    retryStrategy,
    maxRetriesPerRequest: 1,
    ...(subscriber ? {} : { commandTimeout: init.commandTimeout }),
  })
}

const api = async (init: BusWorkerInit, emit: (event: string, data?: unknown) => void) => {
  clockOffsetMs = init.clockOffsetMs ?? 0
  const client = connect(init, init.redisUrl, false)
  const subscriber = connect(init, init.subscriberUrl ?? init.redisUrl, true)
  client.on('error', () => {})
  subscriber.on('error', () => {})
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: init.channel,
    heartbeatMs: init.heartbeatMs,
    ...(init.signingSecret === undefined ? {} : { signingSecret: init.signingSecret }),
  })
  const memory = new MemoryLayer({ ttl: 600_000 })
  const stack = new CacheStack(
    [memory, new RedisLayer({ client, prefix: init.prefix, commandTimeout: init.commandTimeout })],
    { invalidationBus: bus, onLayerError: 'bypass', broadcastL1Invalidation: init.broadcastL1Invalidation },
  )
  stack.on('unverified', (event) => emit('unverified', event))
  await bus.ready
  return {
    get: (key: string) => stack.get(key),
    set: (key: string, value: unknown, tags?: string[]) => stack.set(key, value, tags ? { tags } : undefined),
    delete: (key: string) => stack.delete(key),
    invalidateByTag: (tag: string) => stack.invalidateByTag(tag),
    /** What this instance's memory holds for `key` (no Redis involved). */
    inMemory: (key: string) => memory.get(key)?.value,
    stats: () => ({ stack: stack.getStats(), bus: bus.stats }),
    /** Steps this process's wall clock by `ms` (an NTP correction, say). */
    shiftClock: (ms: number) => {
      clockOffsetMs += ms
    },
    close: async () => {
      stack.close()
      await bus.close()
      client.disconnect()
      subscriber.disconnect()
    },
  }
}

export type BusWorkerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
