import KeyvRedis from '@keyv/redis'
import { createKeyv } from '@layercache/keyv'
import { eventually } from '@layercache/test-utils'
import { type Cache, createCache } from 'cache-manager'
import { Redis } from 'ioredis'
import { Keyv } from 'keyv'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from 'layercache'
import { PriceDb, PriceService } from './prices'

export interface StorySummary {
  /** What instance B answered for product 1 after A changed its price from 249 to 199. */
  readonly before: { readonly bAfterChange: number | undefined }
  readonly after: {
    readonly bAfterChange: number | undefined
    /** Entries `invalidateByTag('prices')` removed, and the database reads the next two reads caused. */
    readonly tagged: number
    readonly readsAfterTag: number
    /** Where the entry lives in the stack: Keyv's namespace starts the key. */
    readonly stackKey: string
  }
}

/** One app instance on a layercache stack: memory over the shared Redis, with an invalidation bus. */
function layercacheInstance(redisUrl: string, prefix: string) {
  const redis = new Redis(redisUrl)
  const subscriber = new Redis(redisUrl)
  const bus = new RedisInvalidationBus({ publisher: redis, subscriber, channel: `${prefix}bus` })
  const memory = new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })
  const stack = new CacheStack([memory, new RedisLayer({ client: redis, prefix })], {
    invalidationBus: bus,
    broadcastL1Invalidation: true, // cache-manager code often overwrites with set(): tell the others too
  })
  // The only line that changes in the app: its store. Entries whose key starts with "price:" get a tag.
  const cache = createCache({
    stores: [createKeyv(stack, { tags: (key) => (key.startsWith('price:') ? ['prices'] : undefined) })],
  })
  return {
    cache,
    stack,
    inMemory: (key: string) => memory.get(key) !== undefined,
    ready: bus.ready,
    async close() {
      await stack.close()
      await bus.close()
      await Promise.all([redis.quit(), subscriber.quit()])
    },
  }
}

/**
 * The same cache-manager code (PriceService) on two instances, first on the usual cache-manager set-up
 * (a memory Keyv over @keyv/redis), then on a layercache stack through @layercache/keyv.
 */
export async function runCacheManagerStory(
  redisUrl: string,
  prefix: string,
  log: (line: string) => void = console.log,
): Promise<StorySummary> {
  // Before: two tiers per instance, a memory Keyv and @keyv/redis. A's delete reaches its own memory and
  // Redis; B's memory tier keeps the old price until its TTL.
  const twoTiers = (): Cache =>
    createCache({
      stores: [new Keyv(), new Keyv({ store: new KeyvRedis(redisUrl), namespace: `${prefix}before` })],
    })
  const beforeCaches = [twoTiers(), twoTiers()]
  let bBefore: number | undefined
  try {
    const db = new PriceDb()
    const [a, b] = beforeCaches.map((cache) => new PriceService(cache, db)) as [PriceService, PriceService]
    await a.price(1)
    await b.price(1) // from Redis, and now in B's memory tier
    await a.setPrice(1, 199)
    bBefore = await b.price(1)
    log(
      `Before, cache-manager on memory + @keyv/redis: A changes product 1 from $249 to $199; B answers $${bBefore}.`,
    )
  } finally {
    await Promise.all(beforeCaches.map((cache) => cache.disconnect()))
  }

  // After: the same PriceService, on a stack per instance sharing Redis and a bus.
  const instances = [
    layercacheInstance(redisUrl, `${prefix}after:`),
    layercacheInstance(redisUrl, `${prefix}after:`),
  ]
  try {
    await Promise.all(instances.map((instance) => instance.ready))
    await acquaint(instances.map((instance) => instance.stack))
    const [onA, onB] = instances as [(typeof instances)[0], (typeof instances)[0]]
    const db = new PriceDb()
    const a = new PriceService(onA.cache, db)
    const b = new PriceService(onB.cache, db)
    await a.price(1)
    await b.price(1) // from Redis, and now in B's memory layer
    await a.setPrice(1, 199)
    await eventually(() => !onB.inMemory('keyv:price:1'), "B's memory drops price:1")
    const bAfter = await b.price(1)
    log(`After, cache-manager on a layercache stack: A changes product 1 to $199; B answers $${bAfter}.`)

    // Group invalidation reaches what cache-manager wrote: every price, on every instance.
    await b.price(2)
    const tagged = await onA.stack.invalidateByTag('prices')
    await eventually(() => !onB.inMemory('keyv:price:2'), "B's memory drops price:2") // the bus, a few ms
    const readsBefore = db.reads
    await Promise.all([a.price(1), b.price(2)])
    const readsAfterTag = db.reads - readsBefore
    log(
      `stack.invalidateByTag('prices') removed ${tagged} entries written by cache-manager; reading both ` +
        `prices again took ${readsAfterTag} database reads.`,
    )
    return {
      before: { bAfterChange: bBefore },
      after: { bAfterChange: bAfter, tagged, readsAfterTag, stackKey: 'keyv:price:1' },
    }
  } finally {
    await Promise.all(instances.map((instance) => instance.close()))
  }
}

/**
 * Returns once each stack has applied an invalidation of the other's. A stack flushes its memory once
 * when it first hears another (it cannot know what that one sent before): the story lets that happen
 * before it looks at memory.
 */
async function acquaint(stacks: readonly CacheStack[]): Promise<void> {
  const heard = new Set<CacheStack>()
  const stops = stacks.map((stack) => stack.on('peerInvalidation', () => heard.add(stack)))
  try {
    await eventually(async () => {
      if (heard.size < stacks.length) await Promise.all(stacks.map((stack) => stack.delete('warm-up')))
      return heard.size === stacks.length
    }, 'the instances hear each other')
  } finally {
    for (const stop of stops) stop()
  }
}
