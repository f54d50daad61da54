// Several app instances in separate processes sharing one Redis through the invalidation bus, while the
// network and Redis misbehave. After every fault: no instance serves a value invalidated during it, and
// nothing hangs.
import {
  type RedisClusterHandle,
  spawnTestRedis,
  startRedisCluster,
  startTcpProxy,
  type TcpProxyHandle,
  type TestRedis,
} from '@layercache/test-utils'
import { forkWorker, type WorkerHandle } from '@layercache/test-utils/worker-process'
import type { Cluster } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { BusWorkerApi, BusWorkerInit } from './support/bus-worker'
import { eventually, type Instance, startInstance } from './support/instances'
import { nextUnverified } from './support/worker-events'

const WORKER = new URL('./support/bus-worker.ts', import.meta.url)
const SECRET = 'multi-process-secret-0123456789'
const HEARTBEAT_MS = 100

type Worker = WorkerHandle<BusWorkerApi>

describe('bus across processes on a standalone Redis', () => {
  let redis: TestRedis
  let writer: Instance
  let workers: Worker[] = []
  let proxies: TcpProxyHandle[] = []
  let run = 0

  beforeEach(async () => {
    redis = await spawnTestRedis()
    const prefix = `faults${++run}:`
    const client = redis.createClient({ commandTimeout: 3000, maxRetriesPerRequest: 1 })
    client.on('error', () => {}) // reconnect noise while the fault tests stop Redis
    writer = await startInstance(client, prefix, {
      bus: { signingSecret: SECRET, heartbeatMs: HEARTBEAT_MS },
      stack: { broadcastL1Invalidation: true },
    })
    const port = redis.server!.port
    proxies = await Promise.all([0, 1, 2].map(() => startTcpProxy({ targetPort: port })))
    workers = await Promise.all(
      proxies.map((proxy) =>
        forkWorker<BusWorkerApi, BusWorkerInit>(WORKER, {
          redisUrl: redis.url,
          subscriberUrl: proxy.url,
          prefix,
          channel: `${prefix}bus`,
          signingSecret: SECRET,
          heartbeatMs: HEARTBEAT_MS,
          commandTimeout: 500,
        }),
      ),
    )
  })

  afterEach(async () => {
    redis.server?.resume()
    await Promise.all(workers.map((worker) => worker.stop().catch(() => worker.kill())))
    await writer.close()
    await Promise.all(proxies.map((proxy) => proxy.close()))
    await redis.close()
  })

  const everyWorker = async (key: string, expected: unknown, what: string) => {
    for (const worker of workers) {
      await eventually(
        async () => (await worker.call('get', key)) === expected,
        `${what} (pid ${worker.pid})`,
      )
    }
  }

  it('a delete and a tag invalidation on one instance reach every process’s memory', async () => {
    await writer.stack.set('user:1', 'v1', { tags: ['users'] })
    await writer.stack.set('user:2', 'v1', { tags: ['users'] })
    for (const worker of workers) {
      expect(await worker.call('get', 'user:1')).toBe('v1')
      expect(await worker.call('get', 'user:2')).toBe('v1')
    }
    await writer.stack.delete('user:1')
    for (const worker of workers) {
      await eventually(async () => (await worker.call('inMemory', 'user:1')) === undefined, 'delete reaches')
    }
    await writer.stack.invalidateByTag('users')
    for (const worker of workers) {
      await eventually(async () => (await worker.call('inMemory', 'user:2')) === undefined, 'tag reaches')
    }
    const stats = await workers[0]!.call('stats')
    expect(stats.bus.received).toBeGreaterThanOrEqual(2)
    expect(stats.bus.rejected.signature + stats.bus.rejected.unsigned).toBe(0)
  })

  it('a subscriber whose connection is cut and kept out never serves what was invalidated meanwhile', async () => {
    const [cutOff] = workers as [Worker]
    const proxy = proxies[0]!
    await writer.stack.set('price', 'v1')
    await everyWorker('price', 'v1', 'everyone caches v1')
    proxy.refuse()
    const lost = nextUnverified(cutOff, ['reconnect', 'heartbeat'], 'the cut is noticed')
    proxy.cut()
    await writer.stack.set('price', 'v2') // announced, but the cut-off instance cannot hear it
    await lost
    // Flushed on detection: it reads Redis (its data connection is fine) instead of its memory.
    expect(await cutOff.call('get', 'price')).toBe('v2')
    await writer.stack.set('price', 'v3')
    // Still cut off: the next heartbeat flush drops what it cached since.
    await nextUnverified(cutOff, ['heartbeat'], 'the next heartbeat flush')
    expect(await cutOff.call('get', 'price')).toBe('v3')
    const back = nextUnverified(cutOff, ['reconnect'], 'the subscription comes back')
    proxy.accept()
    await back
    await writer.stack.set('price', 'v4')
    await everyWorker('price', 'v4', 'propagation works again')
  })

  it('a black-holed subscriber (no reset, bytes vanish) is detected by its heartbeat', async () => {
    const [partitioned] = workers as [Worker]
    const proxy = proxies[0]!
    await writer.stack.set('stock', 10)
    await everyWorker('stock', 10, 'everyone caches 10')
    const detected = nextUnverified(partitioned, ['heartbeat'], 'the partition is noticed')
    proxy.blackhole()
    await writer.stack.set('stock', 9)
    await detected
    expect(await partitioned.call('get', 'stock')).toBe(9)
    const back = nextUnverified(partitioned, ['reconnect'], 'the subscription comes back')
    proxy.restore()
    await back
    await writer.stack.set('stock', 8)
    await everyWorker('stock', 8, 'propagation works again')
    const stats = await partitioned.call('stats')
    expect(stats.bus.unverified.heartbeat).toBeGreaterThan(0)
  })

  it('Redis paused (SIGSTOP) mid-invalidation: it completes after resume, every process drops the key', async () => {
    await writer.stack.set('page', 'old')
    await everyWorker('page', 'old', 'everyone caches old')
    const flushed = workers.map((worker) =>
      nextUnverified(worker, ['heartbeat'], `pid ${worker.pid} notices`),
    )
    redis.server!.pause()
    const deleting = writer.stack.delete('page')
    await Promise.all(flushed) // every instance noticed it can no longer vouch for its memory
    redis.server!.resume()
    await deleting
    for (const worker of workers) {
      await eventually(async () => (await worker.call('get', 'page')) === undefined, 'the delete reached it')
    }
  })

  it('Redis killed and restarted empty: afterwards no process serves its pre-outage value', async () => {
    await writer.stack.set('config', 'before')
    await everyWorker('config', 'before', 'everyone caches before')
    const lost = workers.map((worker) =>
      nextUnverified(worker, ['reconnect', 'heartbeat'], `pid ${worker.pid} notices`),
    )
    await redis.server!.kill()
    await Promise.all(lost)
    // Down: reads settle (memory was flushed, Redis bypassed), nothing hangs.
    for (const worker of workers) expect(await worker.call('get', 'config')).toBeUndefined()
    const back = workers.map((worker) => nextUnverified(worker, ['reconnect'], `pid ${worker.pid} recovers`))
    await redis.server!.restart()
    await Promise.all(back)
    // The writer's own connection comes back on its own schedule: retry like an app would.
    await eventually(
      () =>
        writer.stack.set('config', 'after').then(
          () => true,
          () => false,
        ),
      'the writer reconnects',
    )
    await everyWorker('config', 'after', 'everyone reads after')
  })
})

describe('bus across processes on a Redis Cluster (sharded pub/sub)', () => {
  let cluster: RedisClusterHandle
  let writerClient: Cluster
  let writer: Instance
  let workers: Worker[] = []

  beforeEach(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    writerClient = cluster.createClient({ redisOptions: { commandTimeout: 3000 } })
    await writerClient.set('warmup', '1')
    writer = await startInstance(writerClient, 'cf:', {
      bus: { signingSecret: SECRET, heartbeatMs: HEARTBEAT_MS },
      stack: { broadcastL1Invalidation: true },
    })
    workers = await Promise.all(
      [0, 1, 2].map(() =>
        forkWorker<BusWorkerApi, BusWorkerInit>(WORKER, {
          clusterNodes: cluster.startupNodes,
          prefix: 'cf:',
          channel: 'cf:bus',
          signingSecret: SECRET,
          heartbeatMs: HEARTBEAT_MS,
          commandTimeout: 500,
        }),
      ),
    )
  })

  afterEach(async () => {
    for (const node of cluster.nodes) node.resume()
    await Promise.all(workers.map((worker) => worker.stop().catch(() => worker.kill())))
    await writer.close()
    await cluster.stop()
  })

  it('invalidations reach every process; pausing the channel’s shard is detected and recovered from', async () => {
    await writer.stack.set('sku:1', 'v1', { tags: ['catalog'] })
    for (const worker of workers) expect(await worker.call('get', 'sku:1')).toBe('v1')
    await writer.stack.invalidateByTag('catalog')
    for (const worker of workers) {
      await eventually(async () => (await worker.call('inMemory', 'sku:1')) === undefined, 'tag reaches')
    }
    // The master serving the channel's slot stops answering: nobody hears heartbeats or invalidations.
    const slot = Number(await writerClient.cluster('KEYSLOT', 'cf:bus'))
    const owner = (writerClient as unknown as { slots: string[][] }).slots[slot]![0]!
    const node = cluster.nodes.find((n) => `${n.host}:${n.port}` === owner)!
    const flushed = workers.map((worker) =>
      nextUnverified(worker, ['heartbeat'], `pid ${worker.pid} notices`),
    )
    node.pause()
    await Promise.all(flushed)
    const recovered = workers.map((worker) =>
      nextUnverified(worker, ['reconnect'], `pid ${worker.pid} recovers`),
    )
    node.resume()
    await Promise.all(recovered)
    await writer.stack.set('sku:1', 'v2')
    for (const worker of workers) {
      await eventually(async () => (await worker.call('get', 'sku:1')) === 'v2', 'propagation works again')
    }
  })
})
