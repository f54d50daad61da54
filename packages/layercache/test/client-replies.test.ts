import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import {
  CacheStack,
  CLEAR_ALL_CONFIRMATION,
  clearAllCache,
  EntityCache,
  InvalidOptionError,
  MemoryLayer,
  migrateTagIndex,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
  RedisTagIndex,
  UnsupportedClientError,
  WriteBehind,
} from 'layercache'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// Every place that takes a Redis client refuses one whose replies layercache would misread. These run on
// the workspace's ioredis 5 (which keeps the options it does not know, so the check sees them) and, in CI,
// on ioredis 6 (scripts/test-ioredis6.mjs), where `replyMapping: 'resp3'` is a real RESP3 client.

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

/** Clients that never connect: construction is where they are refused. */
const unconnected: (Redis | Cluster)[] = []
afterAll(() => {
  for (const client of unconnected) client.disconnect()
})
function client(options: Record<string, unknown>): Redis {
  const created = new Redis({ lazyConnect: true, ...options } as RedisOptions)
  unconnected.push(created)
  return created
}
function cluster(redisOptions: Record<string, unknown>): Cluster {
  const created = new Cluster([{ host: '127.0.0.1', port: 1 }], {
    lazyConnect: true,
    redisOptions: redisOptions as RedisOptions,
  })
  unconnected.push(created)
  return created
}

/** Each entry point that takes a client, handed the client under test (and good ones elsewhere). */
const entryPoints: [string, (bad: Redis | Cluster, good: Redis) => unknown][] = [
  ['RedisLayer', (bad) => new RedisLayer({ client: bad, prefix: 'app' })],
  ['RedisTagIndex', (bad) => new RedisTagIndex({ client: bad, prefix: 'idx' })],
  [
    'RedisInvalidationBus (publisher)',
    (bad, good) => new RedisInvalidationBus({ publisher: bad, subscriber: good }),
  ],
  [
    'RedisInvalidationBus (subscriber)',
    (bad, good) => new RedisInvalidationBus({ publisher: good, subscriber: bad }),
  ],
  ['RedisSingleFlightCoordinator', (bad) => new RedisSingleFlightCoordinator({ client: bad })],
  [
    'RedisSingleFlightCoordinator (subscriber)',
    (bad, good) => new RedisSingleFlightCoordinator({ client: good, subscriber: bad }),
  ],
  ['EntityCache', (bad) => new EntityCache({ redis: bad, entities: { post: { id: 'id', ttl: 1000 } } })],
  [
    'WriteBehind',
    (bad) =>
      new WriteBehind({
        cache: new CacheStack([new MemoryLayer()]),
        client: bad,
        queue: 'q',
        writer: async () => {},
      }),
  ],
  [
    'clearAllCache',
    (bad) => clearAllCache({ client: bad, keyPrefix: 'app:', confirm: CLEAR_ALL_CONFIRMATION }),
  ],
  ['migrateTagIndex', (bad) => migrateTagIndex({ client: bad, prefix: 'idx' })],
]

/** What the entry point did with `bad`: the error it threw or rejected with, or undefined. */
async function refusal(run: () => unknown): Promise<unknown> {
  try {
    await run()
    return undefined
  } catch (error) {
    return error
  }
}

describe('a client whose replies layercache would misread is refused where it is handed over', () => {
  const good = () => client({})

  it.each(entryPoints)('%s: replyMapping "resp3" (RESP3 reply shapes)', async (_, create) => {
    const error = await refusal(() => create(client({ protocol: 3, replyMapping: 'resp3' }), good()))
    expect(error).toBeInstanceOf(UnsupportedClientError)
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'UNSUPPORTED_CLIENT', option: 'replyMapping' })
    // Says why and what to do.
    expect((error as Error).message).toMatch(/replyMapping: "resp3"/)
    expect((error as Error).message).toMatch(/"legacy".*protocol: 2/)
  })

  it.each(entryPoints)('%s: stringNumbers', async (_, create) => {
    const error = await refusal(() => create(client({ stringNumbers: true }), good()))
    expect(error).toBeInstanceOf(UnsupportedClientError)
    expect(error).toMatchObject({ code: 'UNSUPPORTED_CLIENT', option: 'stringNumbers' })
    expect((error as Error).message).toMatch(/integers as strings/)
  })

  it.each(entryPoints)('%s: a Cluster whose redisOptions ask for "resp3"', async (_, create) => {
    const error = await refusal(() => create(cluster({ protocol: 3, replyMapping: 'resp3' }), good()))
    expect(error).toMatchObject({ code: 'UNSUPPORTED_CLIENT', option: 'redisOptions.replyMapping' })
  })

  it('accepts replyMapping "legacy" and protocol 2, what ioredis 5 and 6 use by default', () => {
    for (const options of [{}, { replyMapping: 'legacy' }, { protocol: 2 }, { protocol: 3 }]) {
      expect(() => new RedisLayer({ client: client(options), prefix: 'app' })).not.toThrow()
    }
    expect(() => new RedisLayer({ client: cluster({ protocol: 2 }), prefix: 'app' })).not.toThrow()
  })

  it('stringNumbers really breaks the replies the layer reads (why it is refused)', async () => {
    const plain = redis.createClient({ stringNumbers: true })
    const key = `${redis.keyPrefix}exists`
    await plain.set(key, 'x')
    expect(await plain.exists(key)).toBe('1')
  })

  it("the client ioredis creates by default works (on ioredis 6 that is RESP3 with 'legacy' replies)", async () => {
    const plain = redis.createClient()
    const ioredis6 = (plain.options as { protocol?: unknown }).protocol === 3
    const info = (await plain.call('CLIENT', 'INFO')) as string
    expect(info).toContain(ioredis6 ? 'resp=3' : 'resp=2')
    const stack = new CacheStack([
      new MemoryLayer({ ttl: 60_000 }),
      new RedisLayer({ client: plain, prefix: `${redis.keyPrefix}default:`, ttl: 60_000 }),
    ])
    await stack.set('a', { n: 1 }, { tags: ['t'] })
    await stack.set('b', { n: 2 }, { tags: ['u'] })
    expect(await stack.getOrSet('c', async () => 3)).toBe(3)
    await stack.invalidateByTag('t')
    await stack.invalidateByPrefix('c')
    const fresh = new CacheStack([
      new RedisLayer({ client: plain, prefix: `${redis.keyPrefix}default:`, ttl: 60_000 }),
    ])
    expect(await fresh.get('a')).toBeUndefined()
    expect(await fresh.get('b')).toEqual({ n: 2 })
    expect(await fresh.get('c')).toBeUndefined()
  })
})
