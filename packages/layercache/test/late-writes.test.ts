import { duplicateClient } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheStack, type LayerErrorMode, RedisLayer } from '../src'

const redis = useRedisAndCluster()
const opened: (Redis | Cluster)[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((client) => client.quit().catch(() => undefined)))
})

/**
 * Instance A on a connection of its own with a short command timeout, instance B on the shared one, and
 * the Redis connection (a Cluster node's) that will carry A's SET of `key`. Blocking that connection with a
 * BLPOP holds A's later commands in Redis' queue for it, as a paused Redis or a resend after a reconnect
 * would, while B's commands go through: the order of arrival is then chosen by the test.
 */
async function setup(target: 'standalone' | 'cluster', key: string, onLayerError: LayerErrorMode) {
  const client = redis.client(target)
  const prefix = `${redis.prefix(target, 'late')}:`
  const own = duplicateClient(client)
  opened.push(own)
  // keyIndex off on the Cluster: a plain set is then its SET step alone (with the index, the test would
  // block the step before it as often as not, and A would never send its SET).
  const keyIndex = target === 'standalone'
  const a = new CacheStack([new RedisLayer({ client: own, prefix, commandTimeout: 300, keyIndex })], {
    onLayerError,
  })
  const b = new CacheStack([new RedisLayer({ client, prefix, keyIndex })])
  const reader = new CacheStack([new RedisLayer({ client, prefix, keyIndex })])
  const full = prefix + key
  let carrier = own as Redis
  let list = `${full}:hold`
  if (target === 'cluster') {
    const cluster = own as Cluster
    await cluster.set(`${full}:warm`, '1') // A's slot map is loaded
    const ownerOf = async (name: string) =>
      cluster.slots[Number(await cluster.call('CLUSTER', 'KEYSLOT', name))]![0]
    const owner = await ownerOf(full)
    carrier = cluster.nodes('master').find((node) => `${node.options.host}:${node.options.port}` === owner)!
    // A list on the same node, so that the BLPOP holds the connection A's SET goes through.
    for (let i = 0; (await ownerOf(list)) !== owner; i++) list = `${full}:hold${i}`
  }
  // A's first write reads the servers' clocks; answered (in order, on each connection) before these pings.
  await a.set('warm-up', 1)
  const nodes = target === 'standalone' ? [own as Redis] : (own as Cluster).nodes('master')
  await Promise.all(nodes.map((node) => node.ping()))
  const hold = () => {
    const held = carrier.blpop(list, 0)
    return async () => {
      await (target === 'standalone' ? (client as Redis) : (client as Cluster)).lpush(list, 'go')
      await held
      await carrier.ping() // everything A queued behind the BLPOP has run
    }
  }
  return { a, b, reader, hold }
}

describe.each(['standalone', 'cluster'] as const)('a set whose command timed out, %s', (target) => {
  it('never lands over a newer set of another instance after its caller was told it failed', async () => {
    const { a, b, reader, hold } = await setup(target, 'price:1', 'bypass')
    const release = hold()
    await a.set('price:1', 'older') // bypass: resolves, the write counted as skipped
    expect(a.getStats().skippedWrites).toBe(1)
    await b.set('price:1', 'newer')
    await release()
    expect(await reader.get('price:1')).toBe('newer')
  })

  it('throw mode: the caller gets the timeout, and the older value is not left behind', async () => {
    const { a, b, reader, hold } = await setup(target, 'price:5', 'throw')
    const release = hold()
    await expect(a.set('price:5', 'older')).rejects.toMatchObject({ code: 'LAYER_TIMEOUT' })
    await b.set('price:5', 'newer')
    await release()
    // The failed call's clean-up (a delete queued behind the set) may remove the newer value too: a miss.
    expect(await reader.get('price:5')).not.toBe('older')
  })

  it('never lands after a delete that resolved after it failed (bypass mode: nothing cleans up)', async () => {
    const { a, b, reader, hold } = await setup(target, 'price:2', 'bypass')
    await b.set('price:2', 'before')
    const release = hold()
    await a.set('price:2', 'failed to write') // bypass: resolves, the write counted as skipped
    expect(a.getStats().skippedWrites).toBe(1)
    await b.delete('price:2')
    await release()
    expect(await reader.get('price:2')).toBeUndefined()
  })

  it('a set that reaches Redis in time is written as before', async () => {
    const { a, reader } = await setup(target, 'price:3', 'throw')
    await a.mset([
      { key: 'price:3', value: 3 },
      { key: 'price:4', value: 4 },
    ])
    expect(await reader.mget(['price:3', 'price:4'])).toEqual([3, 4])
  })
})
