import { CacheStack } from '@layercache/core'
import { type RedisClusterHandle, type RedisServerHandle, startRedisCluster } from '@layercache/test-utils'
import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { shardIndexOf, shardOf } from '../src/index-layout'

// A Cluster master restarted without its data loses the index entries and tag sets it held for values
// that live on the other masters (issue 14, the checker's cluster-restart scenario). A group
// invalidation must still remove every value it covers.

let cluster: RedisClusterHandle
let writerClient: Cluster
let invalidatorClient: Cluster
let n = 0
const prefix = () => `loss${++n}:`

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3 })
  writerClient = cluster.createClient()
  invalidatorClient = cluster.createClient()
  await Promise.all([writerClient.set('warmup', '1'), invalidatorClient.set('warmup', '1')])
})
afterAll(() => cluster?.stop())

function masterOf(client: Cluster, key: string): RedisServerHandle {
  const [address] = (client as unknown as { slots: string[][] }).slots[calculateSlot(key)]!
  const node = cluster.nodes.find((candidate) => `${candidate.host}:${candidate.port}` === address)
  if (node === undefined) throw new Error(`no node serves ${key}`)
  return node
}

/** Restarts `node` without its data and waits until both clients reach it again. */
async function restartEmpty(node: RedisServerHandle, probe: string): Promise<void> {
  await node.restart()
  await cluster.ready()
  for (const client of [writerClient, invalidatorClient]) {
    for (;;) {
      try {
        await client.get(probe)
        break
      } catch {
        // The client rediscovers the node; the next attempt goes out once it has.
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  }
}

async function stacks(p: string) {
  const writer = new CacheStack([new RedisLayer({ client: writerClient, prefix: p })])
  const invalidator = new CacheStack([new RedisLayer({ client: invalidatorClient, prefix: p })])
  // The invalidator has written before the restart too (a first write records the masters' identities).
  await invalidator.set('warm', 1)
  return { writer, invalidator }
}

async function stillInRedis(p: string, keys: readonly string[]): Promise<string[]> {
  const values = await Promise.all(keys.map((key) => writerClient.get(p + key)))
  return keys.filter((_, i) => values[i] !== null)
}

describe('a Cluster master restarted without its data', () => {
  it('a tag invalidation still removes the tagged values the lost tag set tracked', async () => {
    const p = prefix()
    const { writer, invalidator } = await stacks(p)
    const tagSet = `${p}~t:team`
    const lost = masterOf(writerClient, tagSet)
    // Values on the other masters: their membership is all the lost node held of them.
    const keys = Array.from({ length: 60 }, (_, i) => `member:${i}`).filter(
      (key) => masterOf(writerClient, p + key) !== lost,
    )
    expect(keys.length).toBeGreaterThan(10)
    await writer.mset(keys.map((key) => ({ key, value: key, tags: ['team'] })))
    // Not values of the layer, though under its prefix: the recovery leaves them.
    const others = ['queue', 'foreign'].filter((key) => masterOf(writerClient, p + key) !== lost)
    await writerClient.xadd(`${p}queue`, '*', 'f', 'v')
    await writerClient.set(`${p}foreign`, 'hello')

    await restartEmpty(lost, tagSet)
    await invalidator.invalidateByTag('team')

    expect(await stillInRedis(p, keys)).toEqual([])
    for (const key of others) expect(await writerClient.exists(p + key)).toBe(1)
  })

  it('a prefix invalidation still removes the values a lost index shard tracked', async () => {
    const p = prefix()
    const { writer, invalidator } = await stacks(p)
    const shard = shardOf(p, 0)
    const lost = masterOf(writerClient, shard.keysKey)
    const keys = Array.from({ length: 400 }, (_, i) => `user:${i}`).filter(
      (key) => shardIndexOf(p + key, 16) === 0 && masterOf(writerClient, p + key) !== lost,
    )
    expect(keys.length).toBeGreaterThan(3)
    await writer.mset(keys.map((key) => ({ key, value: key })))

    await restartEmpty(lost, shard.keysKey)
    await invalidator.invalidateByPrefix('user:')

    expect(await stillInRedis(p, keys)).toEqual([])
  })

  it('a new namespace whose prefix holds only keys that are not values (a counter) is not cleared', async () => {
    const p = prefix()
    await writerClient.set(`${p}loads`, '1')
    await writerClient.xadd(`${p}stream`, '*', 'f', 'v')
    const cache = new CacheStack([new RedisLayer({ client: writerClient, prefix: p })])
    await cache.set('first', 1)
    // No clear was logged: loads that began meanwhile on other instances of the fleet still write back.
    expect(await writerClient.exists(`${p}~{${p}}log`)).toBe(0)
    expect(await writerClient.get(`${p}loads`)).toBe('1')
  })

  it('with every master as it was, a group invalidation removes only what it covers', async () => {
    const p = prefix()
    const { writer } = await stacks(p)
    await writer.mset([
      { key: 'a', value: 1, tags: ['x'] },
      { key: 'b', value: 2, tags: ['y'] },
      { key: 'user:1', value: 3 },
    ])
    // A new instance whose first call is an invalidation finds the masters recorded.
    const late = new CacheStack([new RedisLayer({ client: cluster.createClient(), prefix: p })])
    await late.invalidateByTag('x')
    await late.invalidateByPrefix('other:')
    expect(await stillInRedis(p, ['a', 'b', 'user:1'])).toEqual(['b', 'user:1'])
  })
})
