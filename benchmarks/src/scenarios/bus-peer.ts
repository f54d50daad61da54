// The peer instance of the bus benchmark, in its own process: a CacheStack with a memory layer over Redis
// and a RedisInvalidationBus. It records, on a clock comparable across processes on this host
// (performance.timeOrigin + performance.now()), when each key left its memory, and when each message of
// a raw ioredis SUBSCRIBE (the baseline) arrived.
import { performance } from 'node:perf_hooks'
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from 'layercache'

export interface BusPeerInit {
  readonly url: string
  readonly prefix: string
  readonly channel: string
  readonly rawChannel: string
  readonly signingSecret: string
}

const wallNow = () => performance.timeOrigin + performance.now()

const api = async (init: BusPeerInit) => {
  const client = new Redis(init.url)
  const subscriber = new Redis(init.url)
  const rawSubscriber = new Redis(init.url)
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: init.channel,
    signingSecret: init.signingSecret,
  })
  const memory = new MemoryLayer({ ttl: 600_000 })
  const stack = new CacheStack([memory, new RedisLayer({ client, prefix: init.prefix })], {
    invalidationBus: bus,
  })
  const dropped = new Map<string, number>()
  const rawArrived = new Map<string, number>()
  stack.on('peerInvalidation', ({ operations }) => {
    const at = wallNow()
    for (const operation of operations)
      if ('keys' in operation) for (const key of operation.keys) dropped.set(key, at)
  })
  rawSubscriber.on('message', (_channel, key) => rawArrived.set(key, wallNow()))
  await rawSubscriber.subscribe(init.rawChannel)
  await bus.ready
  return {
    /** Caches `keys` in this peer's memory (read from Redis, where the writer put them). */
    async cache(keys: string[]): Promise<number> {
      const values = await stack.mget(keys)
      return values.filter((value) => value !== undefined).length
    },
    /** Drop / arrival times by key, and clears them. */
    collect() {
      const result = { dropped: [...dropped], rawArrived: [...rawArrived] }
      dropped.clear()
      rawArrived.clear()
      return result
    },
    /** How many of `keys` this peer's memory still holds. */
    held: (keys: string[]) => keys.filter((key) => memory.has(key)).length,
    async close() {
      stack.close()
      await bus.close()
      for (const c of [client, subscriber, rawSubscriber]) c.disconnect()
    },
  }
}

export type BusPeerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
