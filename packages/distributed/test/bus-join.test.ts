// Join epochs: an instance refuses what was signed before it subscribed (replays of captured messages),
// without reading any clock, and still loses no invalidation a live peer sends while it joins.
import { CacheStack, InvalidationBusError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { duplicateClient, spawnTestRedis, startTcpProxy } from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { RedisInvalidationBus } from '../src'
import { WIRE_VERSION } from '../src/bus-wire'
import { MessageSigner } from '../src/message-signer'
import {
  acquainted,
  eventually,
  type Instance,
  inMemory,
  startInstance,
  subscriberFor,
} from './support/instances'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]
const SECRET = 'join-epoch-secret-0123456789abcd'

let open: Instance[] = []
afterEach(async () => {
  await Promise.all(open.map((instance) => instance.close()))
  open = []
})

function publish(target: Target, channel: string, message: string) {
  const client = redis.client(target) as Redis
  return target === 'cluster' ? client.spublish(channel, message) : client.publish(channel, message)
}

/** A message of sender `s`, signed with the fleet's secret, carrying join epoch `e`. */
function signed(channel: string, s: string, q: number, e: number, o: unknown): string {
  const text = JSON.stringify({ s, q, t: Date.now(), n: `${s}-${q}`, e, o })
  return `${WIRE_VERSION}.${new MessageSigner(SECRET).sign(channel, text)}.${text}`
}

describe.each(TARGETS)('join epochs on %s', (target) => {
  it('a message a live peer signed before it knew of a newcomer is refused; its next message flushes the newcomer', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'join')
    const channel = `${prefix}bus`
    const newcomer = await startInstance(client, prefix, { bus: { signingSecret: SECRET } })
    open.push(newcomer)
    const joinedAt = Number(await client.get(`${channel}~epoch`))
    expect(joinedAt).toBeGreaterThan(0)
    const flushes: string[] = []
    newcomer.stack.on('unverified', (event) => flushes.push(event.reason))
    await newcomer.stack.set('x', 1)
    await eventually(() => newcomer.bus.stats.received === 0 && flushes.length === 0, 'settled')
    // Signed before "peer" heard the newcomer's join announcement: a replay, or a live peer's message of
    // that moment. The newcomer cannot tell: it does not apply it, and flushes (never drops it unheard).
    await publish(target, channel, signed(channel, 'peer', 4, joinedAt - 1, [{ k: ['x'] }]))
    await eventually(() => newcomer.bus.stats.rejected.beforeJoin === 1, 'the refusal')
    expect(flushes).toEqual(['gap'])
    expect(inMemory(newcomer, 'x')).toBeUndefined()
    await newcomer.stack.set('x', 2)
    // The peer's answer to the announcement: its first message heard, not its first sent: a gap, flushed.
    await publish(target, channel, signed(channel, 'peer', 5, joinedAt, null))
    // Known now: an older message of it is a replay, whatever epoch it carries.
    await publish(target, channel, signed(channel, 'peer', 3, joinedAt - 1, [{ k: ['y'] }]))
    await publish(target, channel, 'the end') // refused by any version; heard after the others
    await eventually(() => newcomer.bus.stats.rejected.malformed === 1, 'the newcomer heard them all')
    expect(newcomer.bus.stats.rejected).toMatchObject({ beforeJoin: 1, replay: 1 })
    expect(newcomer.bus.stats.received).toBe(0)
    expect(flushes).toEqual(['gap', 'gap'])
    expect(inMemory(newcomer, 'x')).toBeUndefined()
  })

  it('after Redis lost the counter, a sender that joined since is heard by an instance that joined before', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'lost')
    const channel = `${prefix}bus`
    // Long heartbeats: nothing tells the new sender of the old instance's epoch while the test runs.
    const bus = { signingSecret: SECRET, heartbeatMs: 60_000 }
    await client.set(`${channel}~epoch`, 100)
    const old = await startInstance(client, prefix, { bus })
    open.push(old)
    await old.stack.set('x', 1)
    // What a restart without data does to the counter.
    await client.del(`${channel}~epoch`)
    const late = await startInstance(client, prefix, { bus })
    open.push(late)
    expect(Number(await client.get(`${channel}~epoch`))).toBeLessThan(100)

    await late.stack.delete('x')
    // Applied, or at least flushed: never refused unheard while the old instance serves the old value.
    await eventually(() => inMemory(old, 'x') === undefined, 'the old instance dropped x')
  })

  it('what it refused before its join announcement came back is flushed then, even if its sender says no more', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'announce')
    const channel = `${prefix}bus`
    // A publisher that holds the newcomer's first message (its join announcement) until the test lets it go.
    const publisher = duplicateClient(client) as Redis
    publisher.on('error', () => {})
    const method = target === 'cluster' ? 'spublish' : 'publish'
    const send = publisher[method].bind(publisher) as (channel: string, message: string) => Promise<number>
    let letGo!: () => void
    const held = new Promise<void>((resolve) => {
      letGo = resolve
    })
    let first = true
    ;(publisher as unknown as Record<string, unknown>)[method] = (on: string, message: string) => {
      if (!first) return send(on, message)
      first = false
      return held.then(() => send(on, message))
    }
    const subscriber = subscriberFor(client)
    const bus = new RedisInvalidationBus({ publisher, subscriber, channel, signingSecret: SECRET })
    const stack = new CacheStack([new MemoryLayer()], { invalidationBus: bus })
    const flushes: string[] = []
    try {
      await bus.ready
      stack.on('unverified', (event) => flushes.push(event.reason))
      await stack.set('x', 1)
      // A live peer's delete signed just before it heard of the newcomer; the peer then stops.
      await publish(target, channel, signed(channel, 'peer', 7, 0, [{ k: ['x'] }]))
      await eventually(() => bus.stats.rejected.beforeJoin === 1, 'refused')
      expect(await stack.get('x')).toBe(1)
      letGo()
      await eventually(() => flushes.includes('gap'), 'flushed once the announcement is heard back')
      expect(await stack.get('x')).toBeUndefined()
    } finally {
      stack.close()
      await bus.close()
      subscriber.disconnect()
      publisher.disconnect()
    }
  })

  it('instances that start together hear each other at once and apply each other’s invalidations', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'together')
    const quiet = { signingSecret: SECRET, heartbeatMs: 600_000 } // only the join answers are heard
    const instances = await Promise.all([0, 1, 2].map(() => startInstance(client, prefix, { bus: quiet })))
    open.push(...instances)
    await acquainted(instances.map((instance) => instance.bus))
    const [a, b, c] = instances as [Instance, Instance, Instance]
    await a.stack.set('k', 1)
    for (const instance of [b, c]) expect(await instance.stack.get('k')).toBe(1)
    await a.stack.delete('k')
    await eventually(() => [b, c].every((instance) => inMemory(instance, 'k') === undefined), 'both drop it')
    // While they joined, an answer signed before its sender heard a later join may have been refused
    // (covered by the sender's next answer); nothing else was.
    for (const instance of instances) {
      expect(instance.bus.stats.rejected).toMatchObject({ replay: 0, signature: 0, malformed: 0 })
    }
  })

  it('a join counter holding something else is reported and left as it is; nothing is refused by join', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'badcounter')
    const channel = `${prefix}bus`
    for (const held of ['not a number', '9007199254740991', '-4']) {
      await client.set(`${channel}~epoch`, held)
      const subscriber = subscriberFor(client)
      const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel, signingSecret: SECRET })
      const errors: Error[] = []
      bus.on('error', (error) => errors.push(error))
      try {
        await bus.ready
        expect(errors[0]).toBeInstanceOf(InvalidationBusError)
        expect(errors[0]!.message).toContain(`${channel}~epoch`)
        expect(await client.get(`${channel}~epoch`)).toBe(held)
        // Without an epoch of its own it judges as before: a first message #1 of a sender applies.
        await publish(target, channel, signed(channel, 'peer', 1, 0, [{ k: ['x'] }]))
        await eventually(() => bus.stats.received === 1, `applied (counter ${held})`)
        expect(bus.stats.rejected.beforeJoin).toBe(0)
      } finally {
        await bus.close()
        subscriber.disconnect()
      }
    }
  })
})

describe('join epochs and a sender that cannot hear the channel', () => {
  it('its heartbeat reads the counter, so its invalidations reach an instance that joined after it', async () => {
    const server = await spawnTestRedis()
    const proxy = await startTcpProxy({ targetPort: server.server!.port })
    const client = server.createClient()
    client.on('error', () => {})
    const bus = { signingSecret: SECRET, heartbeatMs: 100 }
    const deafSubscriber = new Redis(proxy.url)
    try {
      const deaf = await startInstance(client, 'deaf:', { bus, subscriber: deafSubscriber })
      proxy.blackhole() // it publishes through `client` still, but hears nothing: no join announcement
      const newcomer = await startInstance(client, 'deaf:', { bus })
      try {
        await eventually(
          () =>
            (newcomer.bus as unknown as { senders: { knows(id: string): boolean } }).senders.knows(
              deaf.bus.id,
            ),
          'the newcomer hears the deaf sender once its heartbeat carries the newcomer’s epoch',
        )
        await deaf.stack.set('k', 1)
        expect(await newcomer.stack.get('k')).toBe(1)
        const received = newcomer.bus.stats.received
        await deaf.stack.delete('k')
        await eventually(
          () => newcomer.bus.stats.received > received && inMemory(newcomer, 'k') === undefined,
          'the newcomer applies the deaf sender’s delete',
        )
      } finally {
        proxy.restore() // lets the deaf subscriber's unsubscribe answer
        await newcomer.close()
        await deaf.close()
      }
    } finally {
      deafSubscriber.disconnect()
      await proxy.close()
      await server.close()
    }
  })
})
