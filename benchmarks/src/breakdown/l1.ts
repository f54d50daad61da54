import { assertKey, CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import type { BenchContext } from '../context'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { compareVariants, printVariants } from './harness'

/**
 * The same rule as core's assertKey (non-empty string, ≤ 1024 chars, no C0 control character or DEL)
 * written as a char-code loop instead of a regular expression, to size what the regex costs per hit.
 */
function keyCheckLoop(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024) throw new TypeError('bad key')
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) throw new TypeError('bad key')
  }
  return key
}

/** Where the time of an L1 hit goes: raw lru-cache, MemoryLayer, key validation, the stack. */
export async function l1Breakdown(ctx: BenchContext): Promise<void> {
  const keys = makeKeys(1000)
  const lru = new LRUCache<string, Product>({ max: 10_000, ttl: 60_000 })
  for (const key of keys) lru.set(key, PAYLOAD)
  const memory = new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })
  const l1Only = new CacheStack([memory])
  await l1Only.mset(keys.map((key) => ({ key, value: PAYLOAD })))
  const redisLayer = new RedisLayer({ client: ctx.client, ttl: 600_000, prefix: `${ctx.prefix}bd:l1` })
  const full = new CacheStack([new MemoryLayer({ ttl: 60_000, maxSize: 10_000 }), redisLayer])
  await full.mset(keys.map((key) => ({ key, value: PAYLOAD })))
  const none = new MemoryLayer({ ttl: 60_000, maxSize: 10_000, protection: 'none' })
  const noneStack = new CacheStack([none])
  await noneStack.mset(keys.map((key) => ({ key, value: PAYLOAD })))

  const variants = [
    { name: 'raw: async k => lru.get(k)', op: async (k: string) => lru.get(k) },
    { name: 'async k => memoryLayer.peek(k) (the hot path read)', op: async (k: string) => memory.peek(k) },
    { name: 'async k => memoryLayer.get(k)?.value', op: async (k: string) => memory.get(k)?.value },
    {
      name: 'async k => memoryLayer.get(assertKey(k))?.value',
      op: async (k: string) => memory.get('' + assertKey(k))?.value,
    },
    { name: 'CacheStack([Memory]).get(k)', op: (k: string) => l1Only.get(k) },
    { name: 'CacheStack([Memory none]).get(k)', op: (k: string) => noneStack.get(k) },
    { name: 'CacheStack([Memory, Redis]).get(k)', op: (k: string) => full.get(k) },
    { name: 'floor: async k => k', op: async (k: string) => k },
    { name: 'floor: sync k => k (no await)', op: (k: string) => k, awaited: false },
    { name: 'sync: lru.get(k) (no await)', op: (k: string) => lru.get(k), awaited: false },
    { name: 'sync: memoryLayer.peek(k) (no await)', op: (k: string) => memory.peek(k), awaited: false },
    { name: 'sync: memoryLayer.get(k) (no await)', op: (k: string) => memory.get(k), awaited: false },
    { name: 'sync: assertKey(k)', op: (k: string) => assertKey(k), awaited: false },
    { name: 'sync: same check as a char-code loop', op: (k: string) => keyCheckLoop(k), awaited: false },
    {
      name: 'sync: memoryLayer.get(assertKey(k)) (no await)',
      op: (k: string) => memory.get('' + assertKey(k)),
      awaited: false,
    },
    {
      name: 'async k => memoryLayer.get(keyCheckLoop(k))?.value',
      op: async (k: string) => memory.get('' + keyCheckLoop(k))?.value,
    },
  ]
  const results = await compareVariants(variants, keys, {
    warmupOps: 300_000,
    rounds: 15,
    opsPerRound: 200_000,
  })
  printVariants(
    'L1 hit breakdown (median ns/op, ratio to the first line: median of rounds (min–max))',
    results,
  )
}
