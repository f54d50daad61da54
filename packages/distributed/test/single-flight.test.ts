import {
  CacheStack,
  type CacheStats,
  InvalidOptionError,
  LayerUnavailableError,
  type SingleFlightCoordinator,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { RedisSingleFlightCoordinator, type RedisSingleFlightCoordinatorOptions } from '../src'
import {
  eventually,
  type FlightInstance,
  gate,
  leaseKeyOf,
  startFlightInstance,
} from './support/flight-instances'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]

/** Long enough that nothing here expires or polls unless a test makes it: wake-ups come from releases. */
const QUIET = { leaseMs: 60_000, waitTimeoutMs: 120_000, pollMs: 60_000 }

let open: FlightInstance[] = []
afterEach(async () => {
  await Promise.all(open.map((instance) => instance.close()))
  open = []
})

function fleet(
  target: Target,
  count: number,
  options: Parameters<typeof startFlightInstance>[2] = { coordinator: QUIET },
) {
  const prefix = redis.prefix(target, 'sf')
  const instances = Array.from({ length: count }, () =>
    startFlightInstance(redis.client(target), prefix, options),
  )
  open.push(...instances)
  return { prefix, instances }
}

function total(instances: readonly FlightInstance[], stat: keyof CacheStats): number {
  return instances.reduce((sum, instance) => sum + (instance.stack.getStats()[stat] as number), 0)
}

function looks(instances: readonly FlightInstance[]): number {
  return instances.reduce((sum, { coordinator }) => sum + coordinator.stats.looks, 0)
}

function expectNoDegradation(instances: readonly FlightInstance[]) {
  expect(total(instances, 'uncoordinatedLoads')).toBe(0)
  expect(total(instances, 'coordinatorErrors')).toBe(0)
  for (const { coordinator } of instances) expect(coordinator.stats).toMatchObject({ timeouts: 0, errors: 0 })
}

describe.each(TARGETS)('fleet-wide single-flight on %s', (target) => {
  it('200 concurrent misses of a cold key across 4 instances run the loader once; all get the value', async () => {
    const { instances } = fleet(target, 4)
    // Braces in a key are fine: the coordinator hashes keys, so its own hash tag decides the slot.
    const key = 'product:{42}:detail'
    const loaded = gate()
    let calls = 0
    const loader = async () => {
      calls++
      await loaded.opened
      return { id: 42, name: 'lamp' }
    }
    const reads = Array.from({ length: 200 }, (_, i) => instances[i % 4]!.stack.getOrSet(key, loader))
    await eventually(() => total(instances, 'coordinatedWaits') === 3, 'the three other instances wait')
    // Each waiter's first look (once subscribed) saw the lease held: only the release can wake them now.
    await eventually(() => looks(instances) === 3, 'the waiters looked at the lease')
    loaded.open()
    const values = await Promise.all(reads)
    expect(calls).toBe(1)
    expect(values).toEqual(Array.from({ length: 200 }, () => ({ id: 42, name: 'lamp' })))
    expect(total(instances, 'loaderCalls')).toBe(1)
    expect(total(instances, 'coordinatedAnswers')).toBe(3)
    // The waiters were woken by the release (polling is an hour away here).
    expect(instances.reduce((sum, { coordinator }) => sum + coordinator.stats.notified, 0)).toBe(3)
    expectNoDegradation(instances)
  })

  it.each([
    { what: 'returns undefined', value: undefined, options: {} },
    { what: 'is refused by shouldCache', value: { rows: [1, 2] }, options: { shouldCache: () => false } },
  ])(
    'a value that is not cached (the loader $what) is handed to the waiters: one loader call',
    async ({ value, options }) => {
      const { instances } = fleet(target, 4)
      const loaded = gate()
      let calls = 0
      const loader = async () => {
        calls++
        await loaded.opened
        return value
      }
      const reads = Array.from({ length: 200 }, (_, i) =>
        instances[i % 4]!.stack.getOrSet('report', loader, options),
      )
      await eventually(() => total(instances, 'coordinatedWaits') === 3, 'the three other instances wait')
      loaded.open()
      const values = await Promise.all(reads)
      expect(calls).toBe(1)
      expect(values).toEqual(Array.from({ length: 200 }, () => value))
      expect(instances.reduce((sum, { coordinator }) => sum + coordinator.stats.handedOver, 0)).toBe(1)
      expect(total(instances, 'coordinatedAnswers')).toBe(3)
      expectNoDegradation(instances)
    },
  )

  it('an instance that gets the lease after another’s load ended uses that load, not its loader', async () => {
    const { prefix, instances } = fleet(target, 2)
    const [a, b] = instances as [FlightInstance, FlightInstance]
    // b's stack asks for the lease only when the test lets it: after its read missed and a's load ended.
    const asked = gate()
    const proceed = gate()
    const late: SingleFlightCoordinator = {
      tryAcquire: async (key) => {
        asked.open()
        await proceed.opened
        return b.coordinator.tryAcquire(key)
      },
      wait: (key) => b.coordinator.wait(key),
    }
    const stack = new CacheStack([new MemoryLayer(), new RedisLayer({ client: b.client, prefix })], {
      singleFlightCoordinator: late,
    })
    let calls = 0
    const loader = () => ++calls
    const reading = stack.getOrSet('k', loader)
    await asked.opened
    expect(await a.stack.getOrSet('k', loader)).toBe(1)
    proceed.open()
    expect(await reading).toBe(1)
    expect(calls).toBe(1)
  })

  it('a value not cached because an invalidation came during its load is not handed over', async () => {
    const [a, b] = fleet(target, 2).instances as [FlightInstance, FlightInstance]
    const loaded = gate()
    const holding = a.stack.getOrSet('k', async () => {
      await loaded.opened
      return 'loaded before the delete'
    })
    await eventually(() => a.coordinator.stats.holding === 1, 'a holds the lease')
    const waiting = b.stack.getOrSet('k', () => 'loaded after the delete')
    await eventually(() => b.stack.getStats().coordinatedWaits === 1, 'b waits')
    await a.stack.delete('k')
    loaded.open()
    expect(await holding).toBe('loaded before the delete')
    expect(await waiting).toBe('loaded after the delete')
    expect(a.coordinator.stats.handedOver).toBe(0)
  })

  it('a waiter is woken by the release notification, not by polling', async () => {
    const [a, b] = fleet(target, 2).instances as [FlightInstance, FlightInstance]
    const lease = await a.coordinator.tryAcquire('k')
    expect(lease).toBeDefined()
    expect(await b.coordinator.tryAcquire('k')).toBeUndefined()
    const waiting = b.coordinator.wait('k')
    // Its first look (once subscribed) saw the lease held; from now on only a notification can wake it.
    await eventually(() => b.coordinator.stats.looks >= 1, 'the waiter looked at the lease')
    expect(await lease!.release({ value: { n: 1 } })).toBe(true)
    expect(await waiting).toEqual({ kind: 'released', result: { value: { n: 1 } } })
    expect(b.coordinator.stats).toMatchObject({ notified: 1, polled: 0, timeouts: 0 })
  })

  it('forged release notifications wake nobody: 4 instances still run the loader once', async () => {
    const { prefix, instances } = fleet(target, 4)
    const key = 'hot'
    const loaded = gate()
    let calls = 0
    const loader = async () => {
      calls++
      await loaded.opened
      return 'the one load'
    }
    const reads = instances.map((instance) => instance.stack.getOrSet(key, loader))
    await eventually(() => total(instances, 'coordinatedWaits') === 3, 'the three other instances wait')
    await eventually(() => looks(instances) === 3, 'the waiters looked at the lease')
    // A neighbour who can publish on the release channel (no secret exists for it) names the key's hash,
    // as a release does, with and without a handed-over result, over and over.
    const hash = /\{(.+)\}/.exec(leaseKeyOf(prefix, key))![1]!
    const channel = `${prefix}sf:{done}`
    const client = redis.client(target) as Redis
    const forge = (message: string) =>
      target === 'cluster' ? client.spublish(channel, message) : client.publish(channel, message)
    const reactions = () =>
      instances.reduce(
        (sum, { coordinator }) => sum + coordinator.stats.looks + coordinator.stats.notified,
        0,
      )
    for (let i = 0; reactions() < 3 + 3 * 40 && calls === 1; i++) {
      await forge(i % 2 === 0 ? hash : `${hash}:result`)
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(calls).toBe(1) // no waiter took a forged release for the real one
    loaded.open()
    expect(await Promise.all(reads)).toEqual(Array.from({ length: 4 }, () => 'the one load'))
    expect(calls).toBe(1)
    expect(total(instances, 'coordinatedAnswers')).toBe(3)
    expectNoDegradation(instances)
  })

  it('loaders see a fencing token that grows with every holder; refresh() runs without one', async () => {
    const [a, b] = fleet(target, 2).instances as [FlightInstance, FlightInstance]
    const tokens: (number | undefined)[] = []
    const loader = (ctx: { fencingToken: number | undefined }) => {
      tokens.push(ctx.fencingToken)
      return tokens.length
    }
    for (const instance of [a, b, a, b]) {
      await instance.stack.getOrSet('row:1', loader)
      await instance.stack.delete('row:1')
    }
    expect(tokens).toHaveLength(4)
    for (const token of tokens) expect(Number.isSafeInteger(token)).toBe(true)
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!)
    await a.stack.refresh('row:1', loader)
    expect(tokens[4]).toBeUndefined()
  })

  it('a holder that lost its lease mid-load removes what it wrote from every layer', async () => {
    const { prefix, instances } = fleet(target, 2)
    const [a, b] = instances as [FlightInstance, FlightInstance]
    const started = gate()
    const loaded = gate()
    const loading = a.stack.getOrSet('k', async () => {
      started.open()
      await loaded.opened
      return 'old'
    })
    await started.opened
    // As if it had expired (the holder froze) with no renewal since: only the release can tell.
    expect(await redis.client(target).del(leaseKeyOf(prefix, 'k'))).toBe(1)
    loaded.open()
    expect(await loading).toBe('old') // its own callers still get what it loaded
    expect(a.stack.getStats().leasesLost).toBe(1)
    expect(a.memory.get('k')).toBeUndefined()
    expect(await b.stack.get('k')).toBeUndefined()
  })

  it('a holder whose lease was taken over does not overwrite the new holder’s value', async () => {
    const { prefix, instances } = fleet(target, 3, {
      coordinator: { leaseMs: 300, waitTimeoutMs: 120_000, pollMs: 60_000 },
    })
    const [a, b, c] = instances as [FlightInstance, FlightInstance, FlightInstance]
    const tokens: Record<string, number | undefined> = {}
    const started = gate()
    const loaded = gate()
    const loading = a.stack.getOrSet('k', async (ctx) => {
      tokens.a = ctx.fencingToken
      started.open()
      await loaded.opened
      return 'old'
    })
    await started.opened
    await redis.client(target).del(leaseKeyOf(prefix, 'k'))
    await eventually(() => a.coordinator.stats.lost === 1, 'a renewal finds the lease gone')
    expect(
      await b.stack.getOrSet('k', (ctx) => {
        tokens.b = ctx.fencingToken
        return 'new'
      }),
    ).toBe('new')
    loaded.open()
    expect(await loading).toBe('old')
    expect(await c.stack.get('k')).toBe('new')
    expect(a.memory.get('k')).toBeUndefined()
    expect(a.stack.getStats().leasesLost).toBe(1)
    expect(tokens.b!).toBeGreaterThan(tokens.a!)
  })

  it('a failing holder releases at once: its callers get the error, waiters take over and get an answer', async () => {
    const { instances } = fleet(target, 3)
    const loaded = gate()
    let calls = 0
    const loader = async () => {
      calls++
      if (calls === 1) {
        await loaded.opened
        throw new Error('database down')
      }
      return 'ok'
    }
    const reads = instances.map((instance) => instance.stack.getOrSet('k', loader))
    await eventually(() => total(instances, 'coordinatedWaits') === 2, 'two instances wait')
    loaded.open()
    const results = await Promise.allSettled(reads)
    const failed = results.filter((result) => result.status === 'rejected')
    expect(failed).toHaveLength(1)
    expect((failed[0] as PromiseRejectedResult).reason.message).toBe('database down')
    expect(results.filter((result) => result.status === 'fulfilled').map((result) => result.value)).toEqual([
      'ok',
      'ok',
    ])
    expect(calls).toBe(2)
    expectNoDegradation(instances)
  })

  it('a background refresh is skipped while another instance loads the key; the stale value is served', async () => {
    const { instances } = fleet(target, 2, {
      coordinator: QUIET,
      stack: { ttl: 500, staleWhileRevalidate: 60_000 },
    })
    const [a, b] = instances as [FlightInstance, FlightInstance]
    await a.stack.getOrSet('k', () => 'v1')
    expect(await b.stack.getOrSet('k', () => 'unused')).toBe('v1')
    await new Promise((resolve) => setTimeout(resolve, 550)) // both memory copies and Redis's are stale now
    const loaded = gate()
    expect(
      await a.stack.getOrSet('k', async (ctx) => {
        ctx.setTtl(60_000)
        await loaded.opened
        return 'v2'
      }),
    ).toBe('v1')
    await eventually(() => a.coordinator.stats.holding === 1, 'a refreshes, holding the lease')
    let bCalls = 0
    expect(
      await b.stack.getOrSet('k', () => {
        bCalls++
        return 'v2 from b'
      }),
    ).toBe('v1')
    await eventually(() => b.stack.getStats().refreshesSkipped === 1, 'b skips its refresh')
    loaded.open()
    await eventually(
      async () => (await b.stack.get('k')) !== undefined && a.coordinator.stats.holding === 0,
      'a done',
    )
    expect(bCalls).toBe(0)
    expect(b.stack.getStats().coordinatedWaits).toBe(0)
  })

  it('a wait ends after waitTimeoutMs while the holder still loads; the instance then loads itself', async () => {
    const { instances } = fleet(target, 2, { coordinator: { leaseMs: 300, waitTimeoutMs: 400, pollMs: 100 } })
    const [a, b] = instances as [FlightInstance, FlightInstance]
    const loaded = gate()
    const holding = a.stack.getOrSet('k', async () => {
      await loaded.opened
      return 'a'
    })
    await eventually(() => a.coordinator.stats.holding === 1, 'a holds the lease')
    expect(await b.stack.getOrSet('k', () => 'b')).toBe('b')
    expect(b.coordinator.stats).toMatchObject({ timeouts: 1, acquired: 0 })
    expect(b.stack.getStats()).toMatchObject({ coordinatedWaits: 1, uncoordinatedLoads: 1 })
    expect(a.coordinator.stats.lost).toBe(0) // renewed all along
    loaded.open()
    expect(await holding).toBe('a')
  })

  it('bounds the waiters in a process, and the size of handed-over results', async () => {
    const { instances } = fleet(target, 2, {
      coordinator: { ...QUIET, maxWaiters: 1, maxResultBytes: 1000 },
    })
    const [a, b] = instances as [FlightInstance, FlightInstance]
    const first = (await a.coordinator.tryAcquire('one'))!
    const second = (await a.coordinator.tryAcquire('two'))!
    const waiting = b.coordinator.wait('one')
    expect(await b.coordinator.wait('two')).toEqual({ kind: 'retry', timedOut: true })
    expect(b.coordinator.stats).toMatchObject({ overflows: 1, waiting: 1 })
    await eventually(() => b.coordinator.stats.looks >= 1, 'the waiter looked at the lease')
    expect(await first.release({ value: 'x'.repeat(2000) })).toBe(true)
    expect(await waiting).toEqual({ kind: 'released', result: undefined })
    expect(a.coordinator.stats.handedOver).toBe(0)
    await second.release()
  })

  it('close() ends every wait and later calls reject; a stack then loads without a lease', async () => {
    const [a, b] = fleet(target, 2).instances as [FlightInstance, FlightInstance]
    const lease = await a.coordinator.tryAcquire('k')
    const waiting = b.coordinator.wait('k')
    await b.coordinator.close()
    expect(await waiting).toEqual({ kind: 'retry' })
    await expect(b.coordinator.tryAcquire('k')).rejects.toBeInstanceOf(LayerUnavailableError)
    expect(await b.stack.getOrSet('k', () => 'loaded')).toBe('loaded')
    expect(b.stack.getStats()).toMatchObject({ coordinatorErrors: 1, uncoordinatedLoads: 1 })
    await lease!.release()
  })
})

describe('RedisSingleFlightCoordinator options', () => {
  const make = (options: Partial<RedisSingleFlightCoordinatorOptions>) => () =>
    new RedisSingleFlightCoordinator({ client: redis.client('standalone'), ...options })

  it.each([
    ['an unknown option', { leaseMS: 5 }],
    ['no client', { client: undefined }],
    ['a client that is not ioredis', { client: {} }],
    ['a zero leaseMs', { leaseMs: 0 }],
    ['a fractional pollMs', { pollMs: 2.5 }],
    ['a waitTimeoutMs not above leaseMs', { leaseMs: 10_000, waitTimeoutMs: 10_000 }],
    ['a pollMs not below waitTimeoutMs', { pollMs: 15_000 }],
    ['a negative commandTimeout', { commandTimeout: -1 }],
    ['a prefix with a brace', { prefix: 'app:{sf}:' }],
    ['an empty prefix', { prefix: '' }],
    ['a prefix with a control character', { prefix: 'app\nsf' }],
    ['a serializer without deserialize', { serializer: { serialize: JSON.stringify } }],
    ['a zero maxWaiters', { maxWaiters: 0 }],
  ])('refuses %s', (_what, options) => {
    expect(make(options as Partial<RedisSingleFlightCoordinatorOptions>)).toThrow(InvalidOptionError)
  })

  it('refuses the client as its own subscriber, and a Cluster subscriber without sharded subscribers', () => {
    const client = redis.client('standalone')
    expect(() => new RedisSingleFlightCoordinator({ client, subscriber: client })).toThrow(InvalidOptionError)
    const cluster = redis.client('cluster') as Cluster
    const plain = cluster.duplicate(undefined, { lazyConnect: true })
    try {
      expect(() => new RedisSingleFlightCoordinator({ client: cluster, subscriber: plain })).toThrow(
        /shardedSubscribers/,
      )
      expect(() => new RedisSingleFlightCoordinator({ client: cluster, subscriber: client })).toThrow(
        InvalidOptionError,
      )
    } finally {
      plain.disconnect()
    }
  })
})
