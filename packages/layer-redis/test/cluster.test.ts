import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { type RedisClusterHandle, startRedisCluster } from '@layercache/test-utils'
import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'

let cluster: RedisClusterHandle
let client: Cluster
let n = 0
const prefix = () => `c${++n}:`

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3 })
  client = cluster.createClient()
  await client.set('warmup', '1')
})
afterAll(() => cluster?.stop())

const keys = (count: number) => Array.from({ length: count }, (_, i) => `item:${i}`)

describe('RedisLayer on a local Redis Cluster (3 masters)', () => {
  it('spreads keys over several slots, and every operation works across them', async () => {
    const p = prefix()
    const all = keys(200)
    const slots = new Set(all.map((k) => calculateSlot(`${p}${k}`)))
    expect(slots.size).toBeGreaterThan(100)

    const cache = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: p, ttl: 60_000 })])
    await cache.mset(all.map((key, i) => ({ key, value: { i } })))
    const reader = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: p })])
    expect(await reader.mget([...all, 'missing'])).toEqual([...all.map((_, i) => ({ i })), undefined])
    expect(reader.getStats().layers[1]?.hits).toBe(200)
    // Back-filled: the second read is served by memory only.
    expect(await reader.mget(all.slice(0, 10))).toHaveLength(10)
    expect(reader.getStats().layers[0]?.hits).toBe(10)

    await reader.mdelete(all.slice(0, 100))
    const fresh = new CacheStack([new RedisLayer({ client, prefix: p })])
    const after = await fresh.mget(all)
    expect(after.filter((v) => v === undefined)).toHaveLength(100)
  })

  it('single-key reads, writes, has and getOrSet work through the cluster client', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: prefix() })])
    let loads = 0
    const values = await Promise.all(
      Array.from({ length: 50 }, () => cache.getOrSet('hot', async () => ++loads)),
    )
    expect(new Set(values)).toEqual(new Set([1]))
    expect(loads).toBe(1)
    expect(await cache.has('hot')).toBe(true)
    await cache.delete('hot')
    expect(await cache.has('hot')).toBe(false)
  })

  it('namespaces keep tenants apart on the cluster', async () => {
    const cache = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix: prefix() })])
    await cache.namespace('tenant:a').set('user:1', 'a')
    await cache.namespace('tenant:b').set('user:1', 'b')
    const cold = new CacheStack([new RedisLayer({ client, prefix: (cache.layers[1] as RedisLayer).prefix })])
    expect(await cold.namespace('tenant:a').get('user:1')).toBe('a')
    expect(await cold.namespace('tenant:b').get('user:1')).toBe('b')
  })

  it('clear() scans every master and removes only its prefix', async () => {
    const p = prefix()
    const other = prefix()
    const cache = new CacheStack([new RedisLayer({ client, prefix: p })])
    await cache.mset(keys(600).map((key) => ({ key, value: 1 })))
    await new CacheStack([new RedisLayer({ client, prefix: other })]).set('keep', 1)
    const perMaster = await Promise.all(
      client.nodes('master').map(async (node) => (await node.keys(`${p}*`)).length),
    )
    expect(perMaster.filter((count) => count > 0).length).toBe(3)
    await (cache.layers[0] as RedisLayer).clear()
    const left = await Promise.all(client.nodes('master').map((node) => node.keys(`${p}*`)))
    // Only the invalidation log survives (loads in flight elsewhere must still see the clear in it), and
    // the index layout record (every instance must keep using the same shard count).
    // With the record of the masters the layer knows (NodeLossRecovery).
    expect(left.flat().sort()).toEqual([`${p}~{${p}}layout`, `${p}~{${p}}log`, `${p}~{${p}}nodes`])
    expect(await client.exists(`${other}keep`)).toBe(1)
  })

  it('mget over slots: a key of another type or a corrupt value is a miss, the breaker never moves', async () => {
    const p = prefix()
    const all = keys(30)
    await new CacheStack([new RedisLayer({ client, prefix: p })]).mset(
      all.map((key, i) => ({ key, value: i })),
    )
    await client.del(`${p}${all[3]}`)
    await client.rpush(`${p}${all[3]}`, 'x')
    await client.set(`${p}${all[7]}`, Buffer.from('Z\xff\xfe'))
    await client.set(`${p}${all[9]}`, 'not a layercache value')
    const cache = new CacheStack([new RedisLayer({ client, prefix: p })], {
      gracefulDegradation: { failureThreshold: 2, retryAfterMs: 60_000 },
    })
    const corrupt: string[] = []
    const circuit: string[] = []
    cache.on('corruptEntry', ({ key, reason }) => corrupt.push(`${key} ${reason}`))
    cache.on('circuit', ({ state }) => circuit.push(state))
    const expected = all.map((_, i) => ([3, 7, 9].includes(i) ? undefined : i))
    for (let round = 0; round < 3; round++) expect(await cache.mget(all)).toEqual(expected)
    expect(await cache.get(all[3]!)).toBeUndefined()
    expect(circuit).toEqual([])
    // MGET answers nil for a key of another type (a plain miss); a single-key read says what it is.
    expect(corrupt.slice(0, 2)).toEqual([`${all[7]} unreadable`, `${all[9]} unreadable`])
    expect(corrupt.at(-1)).toBe(`${all[3]} wrong-type`)
    expect(cache.getStats()).toMatchObject({ corruptEntries: 7, errors: 0 })
  })

  it('concurrent gets: one MGET per slot the batch holds two keys or more of, a key of another type reported', async () => {
    const p = prefix()
    const tagged = Array.from({ length: 8 }, (_, i) => `{user:1}:f${i}`)
    const spread = keys(20)
    await new CacheStack([new RedisLayer({ client, prefix: p })]).mset(
      [...tagged, ...spread].map((key) => ({ key, value: { key } })),
    )
    await client.rpush(`${p}{user:1}:list`, 'x')
    const cache = new CacheStack([new RedisLayer({ client, prefix: p })])
    const corrupt: string[] = []
    cache.on('corruptEntry', ({ key, reason }) => corrupt.push(`${reason} ${key}`))
    const mgets = async () => {
      const infos = await Promise.all(client.nodes('master').map((node) => node.info('commandstats')))
      return infos.reduce((sum, info) => sum + Number(/^cmdstat_mget:calls=(\d+)/m.exec(info)?.[1] ?? 0), 0)
    }
    const before = await mgets()
    // The first get goes out alone at once; the others are batched.
    const batch = [...tagged, '{user:1}:list', '{user:1}:missing', ...spread, ...tagged]
    const answers = await Promise.all(['opener', ...batch].map((key) => cache.get(key)))
    expect(answers).toEqual([
      undefined,
      ...batch.map((key) => (key.endsWith(':list') || key.endsWith(':missing') ? undefined : { key })),
    ])
    expect(corrupt).toEqual(['wrong-type {user:1}:list'])
    const perSlot = new Map<number, number>()
    for (const key of new Set(batch)) {
      const slot = calculateSlot(`${p}${key}`)
      perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1)
    }
    expect(perSlot.get(calculateSlot(`${p}${tagged[0]}`))).toBe(10)
    expect((await mgets()) - before).toBe([...perSlot.values()].filter((count) => count > 1).length)
  })
})
