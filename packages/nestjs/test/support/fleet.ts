import { CacheStack, type CacheStackOptions } from '@layercache/core'
import { RedisInvalidationBus, RedisSingleFlightCoordinator } from '@layercache/distributed'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { eventually, getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, afterEach, beforeAll } from 'vitest'

export interface Instance {
  readonly stack: CacheStack
  readonly bus: RedisInvalidationBus
  /** What this instance's memory layer holds for the stored key `key`, without asking Redis. */
  inMemory(key: string): unknown
  /** Closes what the instance opened for its stack (bus, coordinator): a LayercacheModule `onClose`. */
  close(): Promise<void>
}

export interface FleetOptions extends CacheStackOptions {
  /** Give each instance a RedisSingleFlightCoordinator: one load per key across the fleet. */
  readonly coordinated?: boolean
}

/**
 * Registers the hooks of a test file running app instances on one real Redis: `fleet(n)` gives `n`
 * instances (memory over Redis, each with its own connections and invalidation bus) under a key prefix of
 * their own; whatever a test did not close is closed after it.
 */
export function useFleet(): {
  fleet(count: number, options?: FleetOptions): Promise<Instance[]>
  redis(): TestRedis
  prefix(): string
} {
  let redis: TestRedis
  let run = 0
  let open: Instance[] = []
  beforeAll(async () => {
    redis = await getTestRedis()
  })
  afterEach(async () => {
    await Promise.all(open.map((instance) => instance.close()))
    open = []
  })
  afterAll(() => redis.close())
  return {
    redis: () => redis,
    prefix: () => `${redis.keyPrefix}f${run}:`,
    async fleet(count, { coordinated = false, ...options } = {}) {
      const prefix = `${redis.keyPrefix}f${++run}:`
      const instances = await Promise.all(
        Array.from({ length: count }, async () => {
          const client = redis.createClient()
          const bus = new RedisInvalidationBus({
            publisher: client,
            subscriber: redis.createClient(),
            channel: `${prefix.slice(0, -1)}-bus`, // outside the stack's keys
          })
          const coordinator = coordinated
            ? new RedisSingleFlightCoordinator({ client, prefix: `${prefix}sf:` })
            : undefined
          const memory = new MemoryLayer({ ttl: 60_000 })
          const stack = new CacheStack([memory, new RedisLayer({ client, prefix })], {
            invalidationBus: bus,
            ...(coordinator ? { singleFlightCoordinator: coordinator } : {}),
            ...options,
          })
          await bus.ready
          let closed: Promise<void> | undefined
          const instance: Instance = {
            stack,
            bus,
            inMemory: (key) => memory.get(key),
            close: () => {
              closed ??= (async () => {
                stack.close()
                await bus.close()
                await coordinator?.close()
              })()
              return closed
            },
          }
          return instance
        }),
      )
      open.push(...instances)
      await acquainted(instances.map((instance) => instance.bus))
      return instances
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
