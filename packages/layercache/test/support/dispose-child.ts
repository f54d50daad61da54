/**
 * A whole app instance in a process of its own, for shutdown.test.ts: two stacks over one Redis (so one
 * waits on the other's fleet lease and its coordinator opens a subscriber), a signed bus with its
 * heartbeat, a warmer, a load still running, and a started WriteBehind queue with a write
 * in it. Everything is disposed with `await using`, then the app quits its own Redis clients and does
 * nothing else: the process must exit by itself. Prints one line per step to stdout.
 */
import { Redis } from 'ioredis'
import {
  CacheStack,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
  WriteBehind,
} from '../../src'

const url = process.env.REDIS_URL!
const prefix = process.env.KEY_PREFIX!
const redis = new Redis(url)
const subscriber = new Redis(url)

function stack(name: string): CacheStack {
  return new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client: redis, prefix })], {
    invalidationBus: new RedisInvalidationBus({
      publisher: redis,
      subscriber,
      channel: `${prefix}bus`,
      signingSecret: 'shutdown-test-secret',
    }),
    singleFlightCoordinator: new RedisSingleFlightCoordinator({ client: redis, prefix: `${prefix}${name}:` }),
    staleWhileRevalidate: 60_000,
  })
}

{
  await using a = stack('fleet')
  await using b = stack('fleet')
  await using queue = new WriteBehind({
    cache: a,
    client: redis,
    queue: `${prefix}queue`,
    writer: async () => {},
    pollIntervalMs: 10,
  }).start()
  a.addWarmer('home', () => 'page', { ttl: 60_000 })

  // One load for both stacks: b waits on a's lease through its coordinator's subscriber.
  let release!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const loads = [a, b].map((cache) =>
    cache.getOrSet('product:1', async () => {
      await gate
      return { id: 1 }
    }),
  )
  await new Promise((resolve) => setImmediate(resolve))
  release()
  await Promise.all(loads)
  console.log('loaded')

  // A load still running when the scope ends: its loader settles only when its signal aborts.
  const hanging = a.getOrSet(
    'product:2',
    (ctx) =>
      new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
  )
  hanging.then(
    () => console.log('hanging load answered'),
    (error: Error) => console.log(`hanging load: ${error.name}`),
  )
  await a.delete('home') // a warmer refill is due
  await queue.write('order:1', { total: 10 })
  console.log('disposing')
  // Abandon the refresh at once rather than after the default 10 s.
  await a.close({ abandonAfter: 0 })
}
console.log('disposed')
await Promise.all([redis.quit(), subscriber.quit()])
console.log('quit')
