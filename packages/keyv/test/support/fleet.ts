import { CacheStack, type CacheStackOptions } from '@layercache/core'
import { RedisInvalidationBus } from '@layercache/distributed'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { eventually, getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, afterEach, beforeAll } from 'vitest'

export interface Instance {
  readonly stack: CacheStack
  /** What this instance's memory layer holds for the stored key `key`, without asking Redis. */
  inMemory(key: string): unknown
}

/**
 * Registers the hooks of a test file that runs app instances on one real Redis: `fleet(n)` gives `n`
 * instances (memory over Redis, each with its own connections and invalidation bus) under a key prefix of
 * their own, closed after each test.
 */
export function useFleet(): {
  fleet(count: number, options?: CacheStackOptions): Promise<Instance[]>
  redis(): TestRedis
  prefix(): string
} {
  let redis: TestRedis
  let run = 0
  let closing: (() => Promise<void>)[] = []
  beforeAll(async () => {
    redis = await getTestRedis()
  })
  afterEach(async () => {
    await Promise.all(closing.map((close) => close()))
    closing = []
  })
  afterAll(() => redis.close())
  return {
    redis: () => redis,
    prefix: () => `${redis.keyPrefix}f${run}:`,
    async fleet(count, options = {}) {
      const prefix = `${redis.keyPrefix}f${++run}:`
      const started = await Promise.all(
        Array.from({ length: count }, async () => {
          const client = redis.createClient()
          const subscriber = redis.createClient()
          // The channel (and the bus's epoch key) outside the stack's keys: tests count those.
          const channel = `${prefix.slice(0, -1)}-bus`
          const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel })
          const memory = new MemoryLayer({ ttl: 60_000 })
          const stack = new CacheStack([memory, new RedisLayer({ client, prefix })], {
            invalidationBus: bus,
            ...options,
          })
          await bus.ready
          closing.push(async () => {
            stack.close()
            await bus.close()
          })
          return { bus, instance: { stack, inMemory: (key: string) => memory.get(key) } }
        }),
      )
      await acquainted(started.map(({ bus }) => bus))
      return started.map(({ instance }) => instance)
    },
  }
}

/**
 * Waits until every bus has heard each of the others. An instance flushes its memory once when it first
 * hears a peer (it cannot know what it missed before): a test that reads memory afterwards must not race
 * that flush. Reads the bus's private sender table, as the distributed package's own tests do.
 */
async function acquainted(buses: readonly RedisInvalidationBus[]): Promise<void> {
  const knows = (bus: RedisInvalidationBus, other: RedisInvalidationBus) =>
    (bus as unknown as { senders: { knows(id: string): boolean } }).senders.knows(other.id)
  await eventually(
    () => buses.every((bus) => buses.every((other) => other === bus || knows(bus, other))),
    'every instance heard every other',
  )
}
