// Peer libraries, each built the way its documentation sets up a memory tier over Redis, behind one tiny
// interface so the peer scenarios can run them side by side on the same Redis, keys and payload.
import KeyvRedis from '@keyv/redis'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import { createCache } from 'cache-manager'
import { Cacheable, CacheableMemory, KeyvCacheableMemory } from 'cacheable'
import { Redis } from 'ioredis'
import { Keyv } from 'keyv'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import { REDIS_TTL_MS } from './context'
import type { Product } from './payload'

/** Every library in the comparison, in table order. */
export const LIBRARIES = ['layercache', 'bentocache', 'cache-manager', 'cacheable', 'raw'] as const
export type Library = (typeof LIBRARIES)[number]
/** The libraries "best peer" is taken over (layercache and the raw baseline are not peers of themselves). */
export const PEERS: readonly Library[] = ['bentocache', 'cache-manager', 'cacheable']

/** How a library's name reads in reports. */
export const LIBRARY_LABEL: Record<Library, string> = {
  layercache: 'layercache',
  bentocache: 'bentocache 1.6',
  'cache-manager': 'cache-manager 7 (Keyv)',
  cacheable: 'cacheable 2',
  raw: 'raw lru-cache / ioredis',
}

/** How each library's memory tier over Redis is set up (for the report's method lines). */
export const LIBRARY_SETUP: Record<Library, string> = {
  layercache:
    'CacheStack([MemoryLayer({ ttl: 60 s, maxSize }), RedisLayer({ client, ttl: 10 min, prefix })]), ' +
    'ioredis with enableAutoPipelining',
  bentocache:
    "new BentoCache({ default: 'c', ttl: 10 min, stores: { c: bentostore({ prefix }).useL1Layer(" +
    'memoryDriver({ maxItems })).useL2Layer(redisDriver({ connection: ioredis with enableAutoPipelining })) } })' +
    ' (memory driver defaults: entries serialised)',
  'cache-manager':
    'createCache({ ttl: 10 min, stores: [new Keyv({ store: new CacheableMemory({ ttl: 60 s, lruSize }) }), ' +
    'new Keyv({ store: new KeyvRedis(url), namespace: prefix })] }) (its multi-store docs; KeyvRedis is on ' +
    'node-redis, not ioredis)',
  cacheable:
    'new Cacheable({ primary: new KeyvCacheableMemory({ ttl: 60 s, lruSize }), secondary: new KeyvRedis(url), ' +
    'namespace: prefix, ttl: 10 min }) (+ tags: true in the tag scenario)',
  raw:
    'new LRUCache({ max, ttl: 60 s }) in front of ioredis (enableAutoPipelining): get = lru.get, else ' +
    "JSON.parse(await redis.get(k)) and lru.set; set = lru.set + redis.set(k, json, 'PX', ttl); getOrSet = " +
    'naive cache-aside (no single-flight); tags = an in-process key list per tag, removed with one pipeline of UNLINKs of 500 keys each',
}

const L1_TTL_MS = 60_000

/** The common surface every scenario drives. */
export interface PeerCache {
  readonly library: Library
  get(key: string): Promise<Product | undefined>
  set(key: string, value: Product, tags?: readonly string[]): Promise<void>
  getOrSet(key: string, loader: () => Promise<Product>): Promise<Product | undefined>
  delete(key: string): Promise<void>
  /** Absent when the library has no tag invalidation. */
  readonly deleteByTag?: (tag: string) => Promise<void>
  /** Called on every key this instance's memory tier dropped because another instance said so (bus). */
  onPeerDrop?(listener: (keys: readonly string[]) => void): void
  close(): Promise<void>
}

export interface PeerOptions {
  /** Redis URL and a run-unique key prefix; every key the peer writes starts with the prefix. */
  readonly url: string
  readonly prefix: string
  /** 'both': memory over Redis; 'l2': Redis alone (no memory tier at all). */
  readonly tier: 'both' | 'l2'
  /** Memory tier bound, in entries. */
  readonly l1Max: number
  /** Enable tag support where the library needs it switched on (cacheable). */
  readonly tags?: boolean
  /** Connect an invalidation bus (layercache, bentocache only). */
  readonly bus?: boolean
  /** ioredis clients with enableAutoPipelining (default true). */
  readonly autoPipelining?: boolean
}

function ioredis(o: PeerOptions): Redis {
  return new Redis(o.url, { enableAutoPipelining: o.autoPipelining !== false, maxRetriesPerRequest: 1 })
}

async function quit(client: Redis): Promise<void> {
  try {
    await client.quit()
  } catch {
    client.disconnect()
  }
}

async function buildLayercache(o: PeerOptions): Promise<PeerCache> {
  const { RedisInvalidationBus } = await import('layercache')
  const client = ioredis(o)
  const redis = new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: o.prefix })
  const layers = o.tier === 'both' ? [new MemoryLayer({ ttl: L1_TTL_MS, maxSize: o.l1Max }), redis] : [redis]
  let subscriber: Redis | undefined
  let bus: InstanceType<typeof RedisInvalidationBus> | undefined
  if (o.bus === true) {
    subscriber = ioredis(o)
    bus = new RedisInvalidationBus({
      publisher: client,
      subscriber,
      channel: `${o.prefix}bus`,
      signingSecret: 'peer-bench-secret-0123456789abcdef',
    })
  }
  const cache = new CacheStack(layers, bus === undefined ? {} : { invalidationBus: bus })
  if (bus !== undefined) await bus.ready
  return {
    library: 'layercache',
    get: (key) => cache.get<Product>(key),
    async set(key, value, tags) {
      await cache.set(key, value, tags === undefined ? undefined : { tags: [...tags] })
    },
    getOrSet: (key, loader) => cache.getOrSet(key, loader),
    async delete(key) {
      await cache.delete(key)
    },
    async deleteByTag(tag) {
      await cache.invalidateByTag(tag)
    },
    onPeerDrop(listener) {
      cache.on('peerInvalidation', ({ operations }) => {
        for (const operation of operations) if ('keys' in operation) listener(operation.keys)
      })
    },
    async close() {
      cache.close()
      await quit(client)
      if (subscriber !== undefined) await quit(subscriber)
    },
  }
}

async function buildBentocache(o: PeerOptions): Promise<PeerCache> {
  // bentocache disconnects (does not quit) the connection it is given when it disconnects.
  const client = ioredis(o)
  let store = bentostore({ prefix: o.prefix.replace(/:$/, '') })
  if (o.tier === 'both') store = store.useL1Layer(memoryDriver({ maxItems: o.l1Max }))
  store = store.useL2Layer(redisDriver({ connection: client }))
  if (o.bus === true) {
    const { hostname, port } = new URL(o.url)
    store = store.useBus(redisBusDriver({ connection: { host: hostname, port: Number(port || 6379) } }))
  }
  const bento = new BentoCache({ default: 'c', ttl: REDIS_TTL_MS, stores: { c: store } })
  return {
    library: 'bentocache',
    async get(key) {
      return (await bento.get<Product>({ key })) ?? undefined
    },
    async set(key, value, tags) {
      await bento.set(tags === undefined ? { key, value } : { key, value, tags: [...tags] })
    },
    getOrSet: (key, loader) => bento.getOrSet<Product>({ key, factory: loader }),
    async delete(key) {
      await bento.delete({ key })
    },
    async deleteByTag(tag) {
      await bento.deleteByTag({ tags: [tag] })
    },
    onPeerDrop(listener) {
      // Emitted just before the memory driver drops the keys, in the same tick.
      bento.on('bus:message:received', (data) => {
        const message = (data as { message?: { keys?: string[]; type?: string } }).message
        if (message?.type === 'delete' && message.keys !== undefined) listener(message.keys)
      })
    },
    async close() {
      await bento.disconnectAll()
    },
  }
}

function keyvRedis(o: PeerOptions): Keyv {
  return new Keyv({ store: new KeyvRedis(o.url), namespace: o.prefix.replace(/:$/, '') })
}

async function buildCacheManager(o: PeerOptions): Promise<PeerCache> {
  const stores =
    o.tier === 'both'
      ? [new Keyv({ store: new CacheableMemory({ ttl: L1_TTL_MS, lruSize: o.l1Max }) }), keyvRedis(o)]
      : [keyvRedis(o)]
  const cache = createCache({ stores, ttl: REDIS_TTL_MS })
  return {
    library: 'cache-manager',
    get: (key) => cache.get<Product>(key),
    async set(key, value) {
      await cache.set(key, value)
    },
    getOrSet: (key, loader) => cache.wrap(key, loader),
    async delete(key) {
      await cache.del(key)
    },
    async close() {
      await cache.disconnect()
    },
  }
}

async function buildCacheable(o: PeerOptions): Promise<PeerCache> {
  const namespace = o.prefix.replace(/:$/, '')
  const cache =
    o.tier === 'both'
      ? new Cacheable({
          primary: new KeyvCacheableMemory({ ttl: L1_TTL_MS, lruSize: o.l1Max }),
          secondary: new KeyvRedis(o.url),
          namespace,
          ttl: REDIS_TTL_MS,
          tags: o.tags === true,
        })
      : new Cacheable({ primary: new KeyvRedis(o.url), namespace, ttl: REDIS_TTL_MS, tags: o.tags === true })
  const peer: PeerCache = {
    library: 'cacheable',
    get: (key) => cache.get<Product>(key),
    async set(key, value, tags) {
      await cache.set(key, value, tags === undefined ? undefined : { tags: [...tags] })
    },
    getOrSet: (key, loader) => cache.getOrSet(key, loader),
    async delete(key) {
      await cache.delete(key)
    },
    async close() {
      await cache.disconnect()
    },
  }
  if (o.tags !== true) return peer
  return {
    ...peer,
    async deleteByTag(tag) {
      await cache.tags.invalidateTag(tag)
    },
  }
}

async function buildRaw(o: PeerOptions): Promise<PeerCache> {
  const client = ioredis(o)
  const lru = o.tier === 'both' ? new LRUCache<string, Product>({ max: o.l1Max, ttl: L1_TTL_MS }) : undefined
  const byTag = new Map<string, Set<string>>()
  const get = async (key: string): Promise<Product | undefined> => {
    const hit = lru?.get(key)
    if (hit !== undefined) return hit
    const text = await client.get(o.prefix + key)
    if (text === null) return undefined
    const value = JSON.parse(text) as Product
    lru?.set(key, value)
    return value
  }
  const set = async (key: string, value: Product, tags?: readonly string[]): Promise<void> => {
    lru?.set(key, value)
    await client.set(o.prefix + key, JSON.stringify(value), 'PX', REDIS_TTL_MS)
    if (tags !== undefined)
      for (const tag of tags) {
        const keys = byTag.get(tag) ?? new Set<string>()
        byTag.set(tag, keys)
        keys.add(key)
      }
  }
  return {
    library: 'raw',
    get,
    set,
    async getOrSet(key, loader) {
      const hit = await get(key)
      if (hit !== undefined) return hit
      const value = await loader()
      await set(key, value)
      return value
    },
    async delete(key) {
      lru?.delete(key)
      await client.unlink(o.prefix + key)
    },
    async deleteByTag(tag) {
      const keys = byTag.get(tag)
      if (keys === undefined) return
      byTag.delete(tag)
      // UNLINK in batches of 500 keys per command, all in one pipeline: the best raw approach.
      const pipe = client.pipeline()
      let batch: string[] = []
      for (const key of keys) {
        lru?.delete(key)
        batch.push(o.prefix + key)
        if (batch.length === 500) {
          pipe.unlink(...batch)
          batch = []
        }
      }
      if (batch.length > 0) pipe.unlink(...batch)
      await pipe.exec()
    },
    async close() {
      await quit(client)
    },
  }
}

const BUILDERS: Record<Library, (o: PeerOptions) => Promise<PeerCache>> = {
  layercache: buildLayercache,
  bentocache: buildBentocache,
  'cache-manager': buildCacheManager,
  cacheable: buildCacheable,
  raw: buildRaw,
}

/** Builds `library`'s cache on `o.url`; every Redis key it writes starts with `o.prefix`. */
export function buildPeer(library: Library, o: PeerOptions): Promise<PeerCache> {
  return BUILDERS[library](o)
}

/** Builds one cache per library (prefix gets the library's name appended) and runs `body`, closing all. */
export async function withPeers<T>(
  libraries: readonly Library[],
  o: PeerOptions,
  body: (peers: Record<Library, PeerCache>) => Promise<T>,
): Promise<T> {
  const peers = {} as Record<Library, PeerCache>
  try {
    for (const library of libraries) {
      peers[library] = await buildPeer(library, { ...o, prefix: `${o.prefix}${library}:` })
    }
    return await body(peers)
  } finally {
    for (const peer of Object.values(peers)) await peer.close()
  }
}

/** Installed versions of the peer packages (read from node_modules), for the report. */
export async function peerVersions(): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const names = ['bentocache', 'cache-manager', 'cacheable', 'keyv', '@keyv/redis', 'lru-cache', 'ioredis']
  const out: string[] = []
  for (const name of names) {
    try {
      const url = new URL(`../node_modules/${name}/package.json`, import.meta.url)
      const { version } = JSON.parse(await readFile(url, 'utf8')) as { version: string }
      out.push(`${name} ${version}`)
    } catch {
      out.push(`${name} (version unknown)`)
    }
  }
  return out.join(', ')
}
