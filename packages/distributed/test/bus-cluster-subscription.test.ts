// The bus on a Redis Cluster when the sharded subscriptions on the channel's master are dropped: ioredis
// resubscribes within milliseconds, and whatever was published in between is lost to the subscribers.
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { acquainted, eventually, type Instance, inMemory, startInstance } from './support/instances'

const redis = useRedisAndCluster()

let open: Instance[] = []
afterEach(async () => {
  await Promise.all(open.map((instance) => instance.close()))
  open = []
})

/** The connection the Cluster client keeps to the master serving `channel`'s slot. */
async function masterOf(cluster: Cluster, channel: string): Promise<Redis> {
  const slot = Number(await cluster.cluster('KEYSLOT', channel))
  const owner = (cluster as unknown as { slots: string[][] }).slots[slot]![0]!
  const master = cluster.nodes('master').find((node) => `${node.options.host}:${node.options.port}` === owner)
  if (master === undefined) throw new Error(`no connection to ${owner}, the master of slot ${slot}`)
  return master
}

describe('bus on a Redis Cluster: sharded subscriptions dropped on the channel’s master', () => {
  it('the instance flushes, and never serves a value another instance deleted while it resubscribed', async () => {
    const client = redis.client('cluster') as Cluster
    const prefix = redis.prefix('cluster', 'dropped')
    const channel = `${prefix}bus`
    // Heartbeats far apart: the loss must be found by itself, not by a sender's next heartbeat.
    const quiet = { bus: { heartbeatMs: 600_000 } }
    const writer = await startInstance(client, prefix, quiet)
    const reader = await startInstance(client, prefix, quiet)
    open.push(writer, reader)
    await acquainted([writer.bus, reader.bus]) // the reader's flush on joining is behind it
    const master = await masterOf(client, channel)
    const subscribers = async () =>
      Number(((await master.call('PUBSUB', 'SHARDNUMSUB', channel)) as unknown[])[1])
    expect(await subscribers()).toBe(2)

    let missed = 0
    for (let round = 0; round < 3; round++) {
      const key = `item${round}`
      await writer.stack.set(key, 'old')
      expect(await reader.stack.get(key)).toBe('old')
      expect(inMemory(reader, key)).toBeDefined()
      const reconnects = reader.bus.stats.unverified.reconnect
      await master.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
      await writer.stack.delete(key)
      // Nobody was subscribed when the delete was announced: the reader cannot have heard it.
      if ((await subscribers()) === 0) missed++
      await eventually(async () => (await subscribers()) === 2, 'ioredis resubscribes both instances', 5000)
      expect(
        await reader.stack.get(key),
        `round ${round}: the reader serves a value deleted meanwhile`,
      ).toBeUndefined()
      // One flush as the subscription dropped, one once it was back.
      await eventually(
        () => reader.bus.stats.unverified.reconnect >= reconnects + 2,
        `round ${round}: the reader flushes as it loses and regains its subscription (${JSON.stringify(reader.bus.stats.unverified)})`,
        5000,
      )
    }
    // Whether a delete fell into the window depends on how fast ioredis resubscribes on this machine (it
    // did in most runs, not all: asserting it made the test flaky). The flushes asserted in every round
    // are what the old code lacked (no flush at all on a Cluster), and what covers the window when it opens.
    console.log(`[bus-cluster-subscription] deletes announced while unsubscribed: ${missed} of 3 rounds`)

    await writer.stack.set('after', 'v1')
    expect(await reader.stack.get('after')).toBe('v1')
    await writer.stack.delete('after')
    await eventually(() => inMemory(reader, 'after') === undefined, 'invalidations reach the reader again')
  })

  it('with classic pub/sub, where ioredis swaps the connection silently, the sender’s next heartbeat flushes', async () => {
    const client = redis.client('cluster') as Cluster
    const prefix = redis.prefix('cluster', 'classic')
    const classic = (heartbeatMs: number) => ({
      bus: { sharded: false, heartbeatMs },
      subscriber: client.duplicate() as Cluster,
    })
    const writer = await startInstance(client, prefix, classic(100))
    const reader = await startInstance(client, prefix, classic(600_000))
    open.push(writer, reader)
    // A message the writer signed before it heard the reader join is refused (beforeJoin): meet first.
    await acquainted([writer.bus, reader.bus])
    await writer.stack.delete('first')
    await eventually(() => reader.bus.stats.received === 1, 'the reader hears the writer')
    await writer.stack.set('item', 'old')
    expect(await reader.stack.get('item')).toBe('old')
    const received = reader.bus.stats.received
    const gaps = reader.bus.stats.gaps
    await Promise.all(client.nodes('master').map((node) => node.call('CLIENT', 'KILL', 'TYPE', 'pubsub')))
    await writer.stack.delete('item')
    await eventually(
      () => inMemory(reader, 'item') === undefined,
      'the reader drops the value: the delete, or a jump in the writer’s numbers, reaches it',
      5000,
    )
    if (reader.bus.stats.received === received) expect(reader.bus.stats.gaps).toBeGreaterThan(gaps)
    expect(await reader.stack.get('item')).toBeUndefined()
  })
})
