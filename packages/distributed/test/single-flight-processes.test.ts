/**
 * Fleet-wide single-flight across real processes: a stampede from 4 forked instances, and a holder killed
 * with SIGKILL mid-load (its lease expires, a waiting instance takes over), on standalone and Cluster.
 */
import {
  getTestRedis,
  type RedisClusterHandle,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import { forkWorker, type WorkerHandle } from '@layercache/test-utils/worker-process'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { eventually, type FlightInstance, startFlightInstance } from './support/flight-instances'
import type { FlightWorkerApi, FlightWorkerInit } from './support/flight-worker'

const WORKER = new URL('./support/flight-worker.ts', import.meta.url)
const TARGETS = ['standalone', 'cluster'] as const
type Target = (typeof TARGETS)[number]

let redis: TestRedis
let cluster: RedisClusterHandle
const clients: Partial<Record<Target, Redis | Cluster>> = {}
let run = 0
let workers: WorkerHandle<FlightWorkerApi>[] = []
let instances: FlightInstance[] = []

beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([getTestRedis(), startRedisCluster({ masters: 3 })])
  clients.standalone = redis.createClient()
  clients.cluster = cluster.createClient()
  await clients.cluster.set('warmup', '1')
})
afterEach(async () => {
  await Promise.all([...workers.map((worker) => worker.stop()), ...instances.map((i) => i.close())])
  workers = []
  instances = []
})
afterAll(async () => {
  await redis?.close()
  await cluster?.stop()
})

function prefixFor(target: Target): string {
  return `${target === 'standalone' ? redis.keyPrefix : ''}sfp${++run}:`
}

async function fork(target: Target, prefix: string, count: number, lease: Partial<FlightWorkerInit> = {}) {
  const init: FlightWorkerInit = {
    ...(target === 'standalone' ? { redisUrl: redis.url } : { clusterNodes: cluster.startupNodes }),
    prefix,
    leaseMs: 10_000,
    waitTimeoutMs: 15_000,
    pollMs: 250,
    ...lease,
  }
  const started = await Promise.all(
    Array.from({ length: count }, () => forkWorker<FlightWorkerApi, FlightWorkerInit>(WORKER, init)),
  )
  workers.push(...started)
  return started
}

async function loads(target: Target, prefix: string): Promise<number> {
  return Number((await clients[target]!.get(`${prefix}loads`)) ?? 0)
}

describe.each(TARGETS)('single-flight across processes on %s', (target) => {
  it('4 processes × 250 concurrent misses of one cold key: exactly one loader call', {
    timeout: 60_000,
  }, async () => {
    const prefix = prefixFor(target)
    const fleet = await fork(target, prefix, 4)
    await Promise.all(fleet.map((worker) => worker.call('start', 'catalogue:home', 250)))
    // Every process has its 250 calls in flight before the one load may finish.
    await Promise.all(fleet.map((worker) => worker.call('open')))
    const results = await Promise.all(fleet.map((worker) => worker.call('results')))
    expect(await loads(target, prefix)).toBe(1)
    const all = results.flat() as { key: string; loadedBy: number }[]
    expect(all).toHaveLength(1000)
    // Everyone got the one value the one holder loaded.
    expect(new Set(all.map((value) => JSON.stringify(value))).size).toBe(1)
    const stats = await Promise.all(fleet.map((worker) => worker.call('stats')))
    expect(stats.reduce((sum, s) => sum + s.stack.loaderCalls, 0)).toBe(1)
    expect(stats.reduce((sum, s) => sum + s.stack.uncoordinatedLoads + s.stack.coordinatorErrors, 0)).toBe(0)
  })

  it('a holder killed mid-load loses its lease; a waiting instance takes over', {
    timeout: 60_000,
  }, async () => {
    const prefix = prefixFor(target)
    const lease = { leaseMs: 1000, waitTimeoutMs: 20_000, pollMs: 50 }
    const [holder] = (await fork(target, prefix, 1, lease)) as [WorkerHandle<FlightWorkerApi>]
    const loading = holder.nextEvent('loading')
    await holder.call('hang', 'k')
    await loading
    const survivor = startFlightInstance(clients[target]!, prefix, { coordinator: lease })
    instances.push(survivor)
    const answer = survivor.stack.getOrSet('k', () => 'loaded by the survivor')
    await eventually(() => survivor.stack.getStats().coordinatedWaits === 1, 'the survivor waits')
    await holder.kill('SIGKILL')
    expect(await answer).toBe('loaded by the survivor')
    expect(await loads(target, prefix)).toBe(1) // the dead holder's
    expect(survivor.stack.getStats()).toMatchObject({
      loaderCalls: 1,
      uncoordinatedLoads: 0,
      coordinatorErrors: 0,
    })
    // It took over because the lease expired (polling saw it gone), not because its wait timed out.
    expect(survivor.coordinator.stats).toMatchObject({ timeouts: 0, acquired: 1 })
  })

  it('with the default lease, a waiter that waits at most 5 s outlives a holder killed mid-load', {
    timeout: 60_000,
  }, async () => {
    const prefix = prefixFor(target)
    // The holder runs with the default lease: it is renewed while its load runs, so it can be short.
    const [holder] = (await fork(target, prefix, 1, {
      leaseMs: undefined,
      waitTimeoutMs: undefined,
      pollMs: 50,
    })) as [WorkerHandle<FlightWorkerApi>]
    const loading = holder.nextEvent('loading')
    await holder.call('hang', 'k')
    await loading
    const survivor = startFlightInstance(clients[target]!, prefix, {
      coordinator: { waitTimeoutMs: 5000, pollMs: 50 },
    })
    instances.push(survivor)
    const answer = survivor.stack.getOrSet('k', () => 'loaded by the survivor')
    await eventually(() => survivor.stack.getStats().coordinatedWaits === 1, 'the survivor waits')
    await holder.kill('SIGKILL')
    expect(await answer).toBe('loaded by the survivor')
    expect(survivor.coordinator.stats).toMatchObject({ timeouts: 0, acquired: 1 })
    expect(survivor.stack.getStats()).toMatchObject({ loaderCalls: 1, uncoordinatedLoads: 0 })
  })

  it('a short lease is renewed while a load runs for many lease periods: one loader call, nothing lost', {
    timeout: 60_000,
  }, async () => {
    const prefix = prefixFor(target)
    const fleet = await fork(target, prefix, 4, { leaseMs: 300, waitTimeoutMs: 30_000, pollMs: 50 })
    // First uses of the layer one process at a time: on a fresh Cluster namespace, concurrent first uses
    // (each checks the masters' run ids, NodeLossRecovery) can clear a value another process just wrote,
    // which is not what this test is about.
    for (const worker of fleet) await worker.call('warm')
    await Promise.all(fleet.map((worker) => worker.call('start', 'report', 50)))
    const everyStat = () => Promise.all(fleet.map((worker) => worker.call('stats')))
    // The load goes on until its holder's lease was renewed 9 times: three lease periods at least.
    await eventually(
      async () => (await everyStat()).some((s) => s.coordinator.holding === 1 && s.coordinator.renewed >= 9),
      'the holder renews its lease while it loads',
      30_000,
    )
    await Promise.all(fleet.map((worker) => worker.call('open')))
    const results = (await Promise.all(fleet.map((worker) => worker.call('results')))).flat()
    expect(results).toHaveLength(200)
    expect(new Set(results.map((value) => JSON.stringify(value))).size).toBe(1)
    expect(await loads(target, prefix)).toBe(1)
    for (const s of await everyStat()) {
      expect(s.coordinator).toMatchObject({ lost: 0, timeouts: 0, holding: 0 })
      expect(s.stack).toMatchObject({ leasesLost: 0, uncoordinatedLoads: 0 })
    }
  })
})
