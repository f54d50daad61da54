import { CacheStack, InvalidationBusError, InvalidOptionError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Redis } from 'ioredis'
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
const SECRET = 'a-secret-of-32-characters-long!!'
const OLD_SECRET = 'the-previous-secret-still-valid'

let open: Instance[] = []
afterEach(async () => {
  await Promise.all(open.map((instance) => instance.close()))
  open = []
})

async function fleet(target: (typeof TARGETS)[number], count: number, options = {}) {
  const prefix = redis.prefix(target, 'bus')
  const instances = await Promise.all(
    Array.from({ length: count }, () => startInstance(redis.client(target), prefix, options)),
  )
  open.push(...instances)
  // Each flushes once as it first hears each other one (see bus-join.test.ts): let that happen now.
  await acquainted(instances.map((instance) => instance.bus))
  return { prefix, instances }
}

/** A raw publish on the instances' channel, as a foreign or malicious publisher would do. */
function rawPublish(target: (typeof TARGETS)[number], channel: string, message: string) {
  const client = redis.client(target) as Redis
  return target === 'cluster' ? client.spublish(channel, message) : client.publish(channel, message)
}

function body(sender: string, sequence: number, operations: unknown, sentAt = Date.now()) {
  return JSON.stringify({
    s: sender,
    q: sequence,
    t: sentAt,
    n: `${sender}-${sequence}-${sentAt}`,
    o: operations,
  })
}

describe.each(TARGETS)('RedisInvalidationBus on %s', (target) => {
  it('a delete on one instance removes the key from the others’ memory, not their reads of Redis', async () => {
    const { instances } = await fleet(target, 3)
    const [a, b, c] = instances as [Instance, Instance, Instance]
    await a.stack.set('user:1', { name: 'old' })
    expect(await b.stack.get('user:1')).toEqual({ name: 'old' })
    expect(await c.stack.get('user:1')).toEqual({ name: 'old' })
    expect(inMemory(b, 'user:1')).toBeDefined()
    await a.stack.delete('user:1')
    await eventually(
      () => inMemory(b, 'user:1') === undefined && inMemory(c, 'user:1') === undefined,
      'peers drop',
    )
    expect(await b.stack.get('user:1')).toBeUndefined()
    expect(a.stack.getStats().busPublished).toBeGreaterThan(0)
    expect(a.stack.getStats().peerInvalidations).toBe(0) // its own message is ignored
    expect(b.stack.getStats().peerInvalidations).toBeGreaterThan(0)
  })

  it('carries every invalidation kind: tags, prefix, pattern, dependencies, generation', async () => {
    const { instances } = await fleet(target, 2, { stack: { generation: 1 } })
    const [a, b] = instances as [Instance, Instance]
    await a.stack.set('p:1', 1, { tags: ['products'] })
    await a.stack.set('p:2', 2, { tags: ['products', 'sale'] })
    await a.stack.set('search:a', 'a')
    await a.stack.set('report:2024:q1', 'q1')
    await a.stack.set('home', 'home', { dependsOn: ['p:3'] })
    await a.stack.set('p:3', 3)
    for (const key of ['p:1', 'p:2', 'search:a', 'report:2024:q1', 'home', 'p:3']) await b.stack.get(key)
    const memoryKey = (key: string) => `g${b.stack.generation}:${key}`
    const held = (key: string) => inMemory(b, memoryKey(key)) !== undefined
    expect(['p:1', 'p:2', 'search:a', 'report:2024:q1', 'home', 'p:3'].every(held)).toBe(true)

    await a.stack.invalidateByTags(['products', 'sale'], 'all')
    await eventually(() => !held('p:2'), 'tag (all) reaches the peer')
    expect(held('p:1')).toBe(true)
    await a.stack.invalidateByTag('products')
    await eventually(() => !held('p:1'), 'tag reaches the peer')
    await a.stack.invalidateByPrefix('search:')
    await eventually(() => !held('search:a'), 'prefix reaches the peer')
    await a.stack.invalidateByPattern('report:*:q?')
    await eventually(() => !held('report:2024:q1'), 'pattern reaches the peer')
    await a.stack.delete('p:3')
    await eventually(() => !held('home') && !held('p:3'), 'dependency cascade reaches the peer')

    await b.stack.get('p:3')
    const before = b.stack.generation!
    const next = await a.stack.bumpGeneration()
    await eventually(() => b.stack.generation === next, 'generation reaches the peer')
    expect(next).toBeGreaterThan(before)
    expect(inMemory(b, `g${before}:p:3`)).toBeUndefined()
  })

  it('with broadcastL1Invalidation, a write makes peers drop their copy and read the new value', async () => {
    const { instances } = await fleet(target, 2, { stack: { broadcastL1Invalidation: true } })
    const [a, b] = instances as [Instance, Instance]
    await a.stack.set('price', 10)
    expect(await b.stack.get('price')).toBe(10)
    await a.stack.set('price', 12)
    await eventually(() => inMemory(b, 'price') === undefined, 'the write reaches the peer')
    expect(await b.stack.get('price')).toBe(12)
  })

  it('without broadcastL1Invalidation, a write is not announced', async () => {
    const { instances } = await fleet(target, 2)
    const [a, b] = instances as [Instance, Instance]
    await a.stack.set('price', 10)
    await b.stack.get('price')
    const published = a.stack.getStats().busPublished
    await a.stack.set('price', 12)
    expect(a.stack.getStats().busPublished).toBe(published)
  })

  it('a read racing a peer’s invalidation never leaves the old value in memory (300 rounds)', async () => {
    const { instances } = await fleet(target, 2, { stack: { broadcastL1Invalidation: true } })
    const [a, b] = instances as [Instance, Instance]
    for (let round = 0; round < 300; round++) {
      const readers = Array.from({ length: 3 }, () => b.stack.get('hot'))
      const applied = b.stack.getStats().peerInvalidations
      await a.stack.set('hot', round)
      await Promise.all(readers)
      await eventually(() => b.stack.getStats().peerInvalidations > applied, 'the write reaches the peer')
      expect(await b.stack.get('hot')).toBe(round)
    }
  })

  it('a load that began before a peer’s invalidation does not put its value in memory (memory-only peers)', async () => {
    const client = redis.client(target)
    const channel = `${redis.prefix(target, 'mem')}bus`
    const peers = [0, 1].map(() => {
      const subscriber = subscriberFor(client)
      const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel, heartbeatMs: 1000 })
      const memory = new MemoryLayer({ ttl: 60_000 })
      const stack = new CacheStack([memory], { invalidationBus: bus })
      return { stack, bus, memory, subscriber }
    })
    try {
      await Promise.all(peers.map((peer) => peer.bus.ready))
      // The flushes of their first messages to each other are behind them: a flush seen below is b's.
      await acquainted(peers.map((peer) => peer.bus))
      const [a, b] = peers as [(typeof peers)[0], (typeof peers)[0]]
      for (let round = 0; round < 20; round++) {
        let release!: () => void
        let started!: () => void
        const gate = new Promise<void>((resolve) => {
          release = resolve
        })
        const running = new Promise<void>((resolve) => {
          started = resolve
        })
        const loading = b.stack.getOrSet(`row${round}`, async () => {
          started()
          await gate
          return 'read before the change'
        })
        await running
        const applied = b.stack.getStats().peerInvalidations
        const flushed = b.stack.getStats().unverifiedFlushes
        await a.stack.delete(`row${round}`) // the row changed; a announces it
        // b applies it, or (a gap) flushes instead.
        await eventually(
          () =>
            b.stack.getStats().peerInvalidations > applied || b.stack.getStats().unverifiedFlushes > flushed,
          'b hears it',
        )
        release()
        await loading
        expect(b.memory.get(`row${round}`)).toBeUndefined()
      }
    } finally {
      for (const peer of peers) {
        peer.stack.close()
        await peer.bus.close()
        peer.subscriber.disconnect()
      }
    }
  })

  it('batches invalidations made in the same tick into one message', async () => {
    const { instances } = await fleet(target, 2)
    const [a, b] = instances as [Instance, Instance]
    const before = a.bus.stats.published
    await Promise.all(Array.from({ length: 50 }, (_, i) => a.bus.publish([{ keys: [`direct${i}`] }])))
    expect(a.bus.stats.published - before).toBe(1)
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
    await a.stack.mset(keys.map((key) => ({ key, value: key })))
    await Promise.all(keys.map((key) => b.stack.get(key)))
    const beforeDeletes = a.bus.stats.published
    await Promise.all(keys.map((key) => a.stack.delete(key)))
    // Deletes finish as their Redis replies arrive, a few per tick: far fewer messages than deletes.
    expect(a.bus.stats.published - beforeDeletes).toBeLessThanOrEqual(10)
    await eventually(() => keys.every((key) => inMemory(b, key) === undefined), 'all keys dropped')
  })

  it('splits an invalidation larger than maxMessageBytes and still delivers all of it', async () => {
    const { instances } = await fleet(target, 2, { bus: { maxMessageBytes: 1024 } })
    const [a, b] = instances as [Instance, Instance]
    const keys = Array.from({ length: 400 }, (_, i) => `long-key-number-${i}`)
    await a.stack.mset(keys.map((key) => ({ key, value: 1 })))
    await b.stack.mget(keys)
    await a.stack.mdelete(keys)
    expect(a.bus.stats.published).toBeGreaterThan(5)
    await eventually(() => keys.every((key) => inMemory(b, key) === undefined), 'all keys dropped')
  })
})

describe.each(TARGETS)('bus signing on %s', (target) => {
  it('rejects and counts unsigned, tampered and foreign-secret messages; applies signed ones', async () => {
    const { prefix, instances } = await fleet(target, 2, { bus: { signingSecret: SECRET } })
    const [a, b] = instances as [Instance, Instance]
    const channel = `${prefix}bus`
    await a.stack.set('k', 1)
    await b.stack.get('k')
    const ops = [{ k: ['k'] }]
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('mallory', 1, ops)}`)
    const forged = new MessageSigner('some-other-secret-16+').sign(channel, body('mallory', 2, ops))
    await rawPublish(target, channel, `${WIRE_VERSION}.${forged}.${body('mallory', 2, ops)}`)
    const signed = new MessageSigner(SECRET).sign(channel, body('mallory', 3, ops))
    await rawPublish(target, channel, `${WIRE_VERSION}.${signed}.${body('mallory', 3, [{ k: ['other'] }])}`)
    await rawPublish(target, channel, 'not even close')
    await rawPublish(target, channel, `v9.${signed}.{}`)
    await eventually(() => {
      const r = b.bus.stats.rejected
      return r.unsigned === 1 && r.signature === 2 && r.malformed === 1 && r.version === 1
    }, 'all five rejected')
    expect(inMemory(b, 'k')).toBeDefined() // nothing was applied
    await a.stack.delete('k')
    await eventually(() => inMemory(b, 'k') === undefined, 'the genuine message applies')
  })

  it('refuses a replayed message; a timestamp minutes off is no reason to refuse one', async () => {
    const { prefix, instances } = await fleet(target, 2, {
      bus: { signingSecret: SECRET, replayWindowMs: 5000 }, // deprecated: accepted, no longer used
    })
    const [, b] = instances as [Instance, Instance]
    const gaps = b.bus.stats.gaps // their first messages to each other are behind them (fleet())
    const channel = `${prefix}bus`
    const signer = new MessageSigner(SECRET)
    const signed = (text: string) => `${WIRE_VERSION}.${signer.sign(channel, text)}.${text}`
    const first = signed(body('replayer', 1, [{ k: ['x'] }]))
    await rawPublish(target, channel, first)
    await rawPublish(target, channel, first)
    await rawPublish(target, channel, signed(body('replayer', 2, [{ k: ['x'] }], Date.now() - 10 * 60_000)))
    await rawPublish(target, channel, signed(body('replayer', 3, [{ k: ['x'] }], Date.now() + 10 * 60_000)))
    await rawPublish(target, channel, signed(body('replayer', 2, [{ k: ['x'] }], Date.now())))
    await eventually(
      () => b.bus.stats.received === 3 && b.bus.stats.rejected.replay === 2,
      `three applied, two replays refused: ${JSON.stringify(b.bus.stats)}`,
    )
    expect(b.bus.stats.rejected.stale).toBe(0)
    expect(b.bus.stats.gaps).toBe(gaps)
  })

  it('a captured message replayed later is refused by an instance that heard its sender, and by one that started after it was sent', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'capture')
    const channel = `${prefix}bus`
    // Both beat rarely, so the newcomer hears nothing from them but the replay.
    const quiet = { signingSecret: SECRET, heartbeatMs: 600_000 }
    const a = await startInstance(client, prefix, { bus: quiet })
    const b = await startInstance(client, prefix, { bus: quiet })
    open.push(a, b)
    await acquainted([a.bus, b.bus])
    const eavesdropper = subscriberFor(client)
    const captured: string[] = []
    eavesdropper.on(target === 'cluster' ? 'smessage' : 'message', (_channel: string, message: string) => {
      captured.push(message)
    })
    try {
      await (target === 'cluster'
        ? (eavesdropper as Redis).ssubscribe(channel)
        : eavesdropper.subscribe(channel))
      await a.stack.delete('warm-up') // the captured message is not the sender's first
      await a.stack.set('x', 1)
      await b.stack.get('x')
      await a.stack.delete('x')
      await eventually(() => captured.some((m) => m.includes('"x"')), 'the delete is captured')
      await eventually(() => inMemory(b, 'x') === undefined, 'b applies the genuine delete')
    } finally {
      eavesdropper.disconnect()
    }
    const replayed = captured.find((m) => m.includes('"x"'))!
    await a.stack.set('x', 2)
    expect(await b.stack.get('x')).toBe(2)
    await rawPublish(target, channel, replayed)
    await eventually(() => b.bus.stats.rejected.replay === 1, 'b refuses the replay')
    expect(inMemory(b, 'x')).toBeDefined()

    // Both senders stop; an instance that starts now hears nothing of them but what is replayed: every
    // message captured, the sender's first one (#1, nothing before it to have missed) included.
    const replays = [...captured]
    for (const instance of [a, b]) await instance.close()
    open = open.filter((instance) => instance !== a && instance !== b)
    const newcomer = await startInstance(client, prefix, { bus: { signingSecret: SECRET } })
    open.push(newcomer)
    const flushes: string[] = []
    newcomer.stack.on('unverified', (event) => flushes.push(`${event.reason} ${event.detail}`))
    await newcomer.stack.set('warm-up', 1)
    await newcomer.stack.set('x', 3)
    for (const message of replays) await rawPublish(target, channel, message)
    // Delivered in order after the replays, and refused by any version: once it is, every replay was heard.
    await rawPublish(target, channel, 'end of the replays')
    await eventually(() => newcomer.bus.stats.rejected.malformed === 1, 'the newcomer heard the replays')
    expect(newcomer.bus.stats.rejected.beforeJoin).toBe(replays.length)
    expect(newcomer.bus.stats.received).toBe(0)
    // Not applied; each one flushes, as any authentic message that cannot be placed does (a genuine sender
    // that joined after Redis lost the join counter carries a small epoch too): a replay can cost the
    // newcomer its memory, never make it serve a stale value.
    expect(flushes).toHaveLength(replays.length)
    expect(flushes.every((flush) => flush.startsWith('gap '))).toBe(true)
  })

  it('a message signed for another channel is refused (the channel is signed too)', async () => {
    const { prefix, instances } = await fleet(target, 2, { bus: { signingSecret: SECRET } })
    const [, b] = instances as [Instance, Instance]
    const text = body('crosser', 1, [{ k: ['x'] }])
    const signature = new MessageSigner(SECRET).sign('another-channel', text)
    await rawPublish(target, `${prefix}bus`, `${WIRE_VERSION}.${signature}.${text}`)
    await eventually(() => b.bus.stats.rejected.signature === 1, 'refused')
  })

  it('rotates secrets: [new, old] signs with new and still accepts old; [old] alone refuses new', async () => {
    const prefix = redis.prefix(target, 'rotate')
    const client = redis.client(target)
    const rotated = await startInstance(client, prefix, { bus: { signingSecret: [SECRET, OLD_SECRET] } })
    const notYet = await startInstance(client, prefix, { bus: { signingSecret: [OLD_SECRET, SECRET] } })
    const stale = await startInstance(client, prefix, { bus: { signingSecret: OLD_SECRET } })
    open.push(rotated, notYet, stale)
    for (const instance of [rotated, notYet, stale]) await instance.stack.get('k')
    await rotated.stack.set('k', 1)
    await notYet.stack.get('k')
    await stale.stack.get('k')
    await rotated.stack.delete('k') // signed with the new secret
    await eventually(() => inMemory(notYet, 'k') === undefined, 'accepted by [old, new]')
    // Its heartbeats, signed with the new secret too, are refused as well.
    await eventually(() => stale.bus.stats.rejected.signature >= 1, 'refused by [old]')
    await notYet.stack.set('j', 1)
    await rotated.stack.get('j')
    await notYet.stack.delete('j') // signed with the old secret
    await eventually(() => inMemory(rotated, 'j') === undefined, 'old signature accepted by [new, old]')
  })
})

describe.each(TARGETS)('unverified memory on %s', (target) => {
  it('a gap in a sender’s sequence flushes memory and says so', async () => {
    const { prefix, instances } = await fleet(target, 1)
    const [b] = instances as [Instance]
    const events: string[] = []
    b.stack.on('unverified', (event) => events.push(event.reason))
    await b.stack.set('kept-until-gap', 1)
    const channel = `${prefix}bus`
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('peer', 1, [{ k: ['unrelated'] }])}`)
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('peer', 2, null)}`)
    await eventually(() => b.bus.stats.received === 1, 'in-order messages applied')
    expect(inMemory(b, 'kept-until-gap')).toBeDefined()
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('peer', 5, null)}`)
    await eventually(() => events.includes('gap'), 'gap reported')
    expect(inMemory(b, 'kept-until-gap')).toBeUndefined()
    expect(b.bus.stats.gaps).toBe(1)
    expect(b.stack.getStats().unverifiedFlushes).toBeGreaterThan(0)
  })

  it('the first message heard from a sender, if not its first, flushes memory: earlier ones may be lost', async () => {
    const { prefix, instances } = await fleet(target, 1)
    const [b] = instances as [Instance]
    const events: string[] = []
    b.stack.on('unverified', (event) => events.push(event.reason))
    await b.stack.set('kept', 1)
    const channel = `${prefix}bus`
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('starter', 1, null)}`)
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('starter', 2, null)}`)
    await rawPublish(target, channel, `${WIRE_VERSION}..${body('latecomer', 7, null)}`)
    await eventually(() => events.includes('gap'), 'gap reported for the latecomer')
    expect(inMemory(b, 'kept')).toBeUndefined()
    expect(b.bus.stats.gaps).toBe(1) // a sender heard from its first message on is no gap
  })

  it('a publish that failed is reported by the sender’s next message; peers flush', async () => {
    const { instances } = await fleet(target, 2)
    const [a, b] = instances as [Instance, Instance]
    await a.stack.set('k', 1)
    await b.stack.get('k')
    // A publisher that fails once: the sequence number it used is never delivered.
    const publisher = a.bus as unknown as { sharded: boolean; publisher: Redis }
    const method = publisher.sharded ? 'spublish' : 'publish'
    const original = publisher.publisher[method].bind(publisher.publisher)
    let failed = false
    ;(publisher.publisher as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      if (!failed && String(args[1]).includes('"k"')) {
        failed = true
        return Promise.reject(new Error('connection lost'))
      }
      return (original as (...a: unknown[]) => Promise<number>)(...args)
    }
    try {
      const error = await a.stack.delete('k').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidationBusError)
      expect(a.stack.getStats().busPublishErrors).toBe(1)
      await eventually(
        () => b.bus.stats.gaps >= 1 && inMemory(b, 'k') === undefined,
        `peer flushes on the gap ${JSON.stringify(b.bus.stats)} ${failed}`,
      )
    } finally {
      ;(publisher.publisher as unknown as Record<string, unknown>)[method] = original
    }
  })
})

describe('bus options', () => {
  it('refuses bad options with a typed error', () => {
    const client = redis.client('standalone') as Redis
    const subscriber = client // checked before any connection is made
    const bad: unknown[] = [
      undefined,
      { publisher: client },
      { publisher: client, subscriber },
      { publisher: client, subscriber: {}, channel: 'c' },
      { publisher: {}, subscriber: client.duplicate({ lazyConnect: true }) },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), channel: '' },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), signingSecret: 'short' },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), signingSecret: [] },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), heartbeatMs: 0 },
      {
        publisher: client,
        subscriber: client.duplicate({ lazyConnect: true }),
        heartbeatMs: 100,
        heartbeatTimeoutMs: 50,
      },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), surprise: true },
      { publisher: client, subscriber: client.duplicate({ lazyConnect: true }), sharded: 'yes' },
    ]
    for (const options of bad) {
      expect(
        () => new RedisInvalidationBus(options as never),
        JSON.stringify(Object.keys(options ?? {})),
      ).toThrow(InvalidOptionError)
    }
  })

  it('refuses a Cluster subscriber without sharded subscribers', () => {
    const cluster = redis.client('cluster')
    const subscriber = (cluster as import('ioredis').Cluster).duplicate(undefined, { lazyConnect: true })
    expect(() => new RedisInvalidationBus({ publisher: cluster, subscriber })).toThrow(/shardedSubscribers/)
    subscriber.disconnect()
  })

  it('the stack refuses a bus that is not one, and broadcastL1Invalidation without a bus', () => {
    const memory = () => [new MemoryLayer({ ttl: 1000 })]
    expect(() => new CacheStack(memory(), { invalidationBus: {} as never })).toThrow(InvalidOptionError)
    expect(() => new CacheStack(memory(), { broadcastL1Invalidation: true })).toThrow(InvalidOptionError)
    expect(() => new CacheStack(memory(), { broadcastL1Invalidation: 'yes' as never })).toThrow(
      InvalidOptionError,
    )
  })

  it('a closed bus refuses to publish and stops applying', async () => {
    const { instances } = await fleet('standalone', 3)
    const [a, b, c] = instances as [Instance, Instance, Instance]
    await b.bus.close()
    await expect(b.bus.publish([{ keys: ['x'] }])).rejects.toThrow(InvalidOptionError)
    await a.stack.set('x', 1)
    await b.stack.get('x')
    await c.stack.get('x')
    await a.stack.delete('x') // resolves once Redis took the PUBLISH: the message is on its way to all
    // An open peer hears it; a round trip on b's subscriber connection comes back after anything Redis
    // sent it before, so b has had every chance to hear it too.
    await eventually(() => inMemory(c, 'x') === undefined, 'the open peer drops x')
    await (b.subscriber as Redis).ping()
    expect(b.bus.stats.received).toBe(0)
    expect(inMemory(b, 'x')).toBeDefined()
  })
})
