import { randomBytes } from 'node:crypto'
import { type ConnectOptions, connectRedis } from '@layercache/test-utils/example-redis'
import type { Redis } from 'ioredis'
import {
  type CacheEventMap,
  type CacheLayer,
  CacheStack,
  type CacheStats,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
} from 'layercache'
import { type Product, ProductDb } from './product-db'

export interface DemoSummary {
  readonly redis: boolean
  readonly stampede: { readonly callers: number; readonly queries: number }
  /** Whether instance B's memory dropped product 1 on the bus message from A (undefined: no Redis). */
  readonly busDropped: boolean | undefined
  /** The price B (A without Redis) serves after the price change. */
  readonly priceAfterUpdate: number
  readonly stats: { readonly A: CacheStats; readonly B?: CacheStats }
  readonly dbQueries: number
}

/** One app instance: its own memory layer, and with Redis its own connections, the shared layer and the bus. */
interface Instance {
  readonly name: 'A' | 'B'
  readonly stack: CacheStack
  readonly memory: MemoryLayer
  close(): Promise<void>
}

/** How long the demo waits for something that takes milliseconds (a bus message) before it gives up. */
const PATIENCE_MS = 5_000

function createInstance(
  name: 'A' | 'B',
  shared: { redis: Redis; prefix: string; secret: string } | undefined,
): Instance {
  const memory = new MemoryLayer({ ttl: 30_000, maxSize: 1_000 })
  if (shared === undefined) {
    const stack = new CacheStack([memory])
    return { name, stack, memory, close: async () => stack.close() }
  }
  // What each app process would create: a client, a second connection for the bus's subscription.
  const client = shared.redis.duplicate()
  const subscriber = shared.redis.duplicate()
  const layers: CacheLayer[] = [memory, new RedisLayer({ client, ttl: 300_000, prefix: shared.prefix })]
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: `${shared.prefix}bus`,
    signingSecret: shared.secret, // the same secret on every instance (from your config)
  })
  const stack = new CacheStack(layers, { invalidationBus: bus })
  return {
    name,
    stack,
    memory,
    close: async () => {
      await stack.close()
      await bus.close()
      await Promise.all([client.quit(), subscriber.quit()])
    },
  }
}

/** Resolves with the first `event` of `stack` that `accept`s, or rejects after PATIENCE_MS. */
function nextEvent(
  stack: CacheStack,
  event: 'peerInvalidation',
  what: string,
  accept: (payload: CacheEventMap['peerInvalidation']) => boolean = () => true,
): Promise<CacheEventMap['peerInvalidation']> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop()
      reject(new Error(`demo: ${what} did not happen within ${PATIENCE_MS} ms`))
    }, PATIENCE_MS)
    const stop = stack.on(event, (payload) => {
      if (!accept(payload)) return
      clearTimeout(timer)
      stop()
      resolve(payload)
    })
  })
}

/**
 * Two buses that start together flush their memory until each has heard the other once (a message from
 * a sender it does not know yet may follow lost ones). So, before the story: both announce a delete of a
 * key nobody uses, again after each bus message, until each instance applied one of the other's.
 */
async function meet(a: Instance, b: Instance): Promise<void> {
  let met = false
  const both = Promise.all([
    nextEvent(a.stack, 'peerInvalidation', 'B reaching A on the bus'),
    nextEvent(b.stack, 'peerInvalidation', 'A reaching B on the bus'),
  ]).finally(() => {
    met = true
  })
  while (!met) {
    await Promise.all([a.stack.delete('hello'), b.stack.delete('hello')])
    // Announce again on the next message either bus delivers, or once every 50 ms, whichever comes first.
    await Promise.race([both, new Promise((wake) => setTimeout(wake, 50))])
  }
  await both
  // Announcements of the last rounds may still be on their way: one more each way, which pub/sub delivers
  // after them, so none lands in the stats of the story.
  const last = (operations: readonly unknown[]) => JSON.stringify(operations).includes('hello:last')
  const drained = Promise.all([
    nextEvent(a.stack, 'peerInvalidation', "B's last hello reaching A", ({ operations }) => last(operations)),
    nextEvent(b.stack, 'peerInvalidation', "A's last hello reaching B", ({ operations }) => last(operations)),
  ])
  await Promise.all([a.stack.delete('hello:last'), b.stack.delete('hello:last')])
  await drained
}

/** Reads product `id` through `instance` and says how the call was answered. */
async function read(
  instance: Instance,
  db: ProductDb,
  id: string,
  log: (line: string) => void,
): Promise<Product> {
  const key = `product:${id}`
  let answer = 'not cached anywhere: loaded from the database'
  const stops = [
    instance.stack.on('hit', (event) => {
      if (event.key !== key) return
      answer = event.layer === 'memory' ? 'memory hit' : `Redis hit, copied into ${instance.name}'s memory`
    }),
  ]
  try {
    const product = (await instance.stack.getOrSet(key, () => db.findProduct(id))) as Product
    log(`  ${instance.name}: get ${key} -> ${answer} (price ${product.price})`)
    return product
  } finally {
    for (const stop of stops) stop()
  }
}

export async function runDemo(
  log: (line: string) => void = console.log,
  connect: ConnectOptions = {},
): Promise<DemoSummary> {
  const redis = await connectRedis(connect)
  const prefix = `layercache-demo:${randomBytes(4).toString('hex')}:`
  redis.removeOnClose(prefix)
  const shared =
    redis.client === undefined
      ? undefined
      : { redis: redis.client, prefix, secret: randomBytes(32).toString('base64') }
  const db = new ProductDb()
  const a = createInstance('A', shared)
  const b = shared === undefined ? undefined : createInstance('B', shared)

  try {
    if (b === undefined) log('layercache demo: one app instance, A, with a memory layer (L1) only.')
    else {
      log('layercache demo: app instances A and B, each with its own memory layer (L1), share one Redis (L2)')
      log('and a signed invalidation bus, as processes behind a load balancer would.')
    }
    log(`Redis: ${redis.description}.`)
    if (b !== undefined) {
      await meet(a, b)
      a.stack.resetStats()
      b.stack.resetStats()
    }

    log('\n1. Cache-aside: A reads product 1 twice.')
    await read(a, db, '1', log)
    await read(a, db, '1', log)

    log('\n2. B reads product 1: A already put it in Redis.')
    if (b === undefined) log('  (skipped: needs Redis)')
    else {
      await read(b, db, '1', log)
      await read(b, db, '1', log)
    }

    const callers = 100
    log(`\n3. Stampede: ${callers} concurrent requests on A for product 2, cached nowhere yet.`)
    const before = db.queries
    const products = await Promise.all(
      Array.from({ length: callers }, () => a.stack.getOrSet('product:2', () => db.findProduct('2'))),
    )
    const queries = db.queries - before
    const coalesced = a.stack.getStats().coalesced
    log(
      `  ${products.length} callers got "${(products[0] as Product).name}" from ${queries} database ` +
        `${queries === 1 ? 'query' : 'queries'}: ${coalesced} of them waited for the first caller's load`,
    )

    log('\n4. The price of product 1 changes: A deletes the key once, the bus tells B.')
    await db.updatePrice('1', 299)
    let busDropped: boolean | undefined
    if (b === undefined) {
      await a.stack.delete('product:1')
      log('  A: delete product:1 (A has no other instance to tell without Redis)')
    } else {
      const heard = nextEvent(
        b.stack,
        'peerInvalidation',
        "A's delete of product:1 reaching B",
        ({ operations }) => JSON.stringify(operations).includes('product:1'),
      )
      const started = performance.now()
      await a.stack.delete('product:1')
      log("  A: delete product:1 -> gone from Redis and from A's memory")
      await heard
      const ms = performance.now() - started
      busDropped = !(await b.memory.has('product:1'))
      log(
        `  B: heard it on the bus ${ms.toFixed(1)} ms after A's delete began (signature checked) -> ` +
          `${busDropped ? "dropped from B's memory" : "STILL in B's memory"}`,
      )
    }
    const fresh = await read(b ?? a, db, '1', log)

    const stats = { A: a.stack.getStats(), ...(b === undefined ? {} : { B: b.stack.getStats() }) }
    log('')
    for (const line of statsTable(stats)) log(line)
    log(`Database queries in all: ${db.queries}`)
    return {
      redis: shared !== undefined,
      stampede: { callers, queries },
      busDropped,
      priceAfterUpdate: fresh.price,
      stats,
      dbQueries: db.queries,
    }
  } finally {
    await Promise.all([a.close(), b?.close()])
    await redis.close()
  }
}

/** What getStats() counted, per instance, in words: every call is counted in exactly one of the first four. */
export function statsTable(stats: { readonly A: CacheStats; readonly B?: CacheStats }): string[] {
  const columns = Object.entries(stats) as [string, CacheStats][]
  const layerHits = (s: CacheStats, name: string) => s.layers.find((layer) => layer.name === name)?.hits ?? 0
  const rows: [string, (s: CacheStats) => string][] = [
    ['calls answered from memory (L1 hits)', (s) => String(layerHits(s, 'memory'))],
    ['calls answered from Redis (L2 hits, copied into L1)', (s) => String(layerHits(s, 'redis'))],
    ['calls that ran the loader (misses: database queries)', (s) => String(s.misses)],
    ['calls that waited for a load already running (coalesced)', (s) => String(s.coalesced)],
    ['hit rate: hits / (hits + misses), coalesced left out', (s) => s.hitRate.toFixed(2)],
    ["invalidations applied from the other instance's bus messages", (s) => String(s.peerInvalidations)],
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  return [
    `What getStats() counted${' '.repeat(width - 21)}${columns.map(([name]) => name.padStart(6)).join('')}`,
    ...rows.map(
      ([label, value]) => `  ${label.padEnd(width)}${columns.map(([, s]) => value(s).padStart(6)).join('')}`,
    ),
  ]
}
