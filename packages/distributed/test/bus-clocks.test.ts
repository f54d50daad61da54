// Instances whose wall clocks disagree by up to ten minutes, each in a process of its own with Date.now()
// shifted, sharing one Redis through the signed bus (invariant 4: clocks change nothing but log lines).
import { spawnTestRedis, startTcpProxy, type TcpProxyHandle, type TestRedis } from '@layercache/test-utils'
import { forkWorker, type WorkerHandle } from '@layercache/test-utils/worker-process'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { BusWorkerApi, BusWorkerInit } from './support/bus-worker'
import { eventually, type Instance, inMemory, startInstance } from './support/instances'
import { nextUnverified } from './support/worker-events'

const WORKER = new URL('./support/bus-worker.ts', import.meta.url)
const SECRET = 'clock-skew-secret-0123456789abcd'
const HEARTBEAT_MS = 100
const MINUTE = 60_000
const OFFSETS = [40_000, -40_000, 10 * MINUTE, -10 * MINUTE]

type Worker = WorkerHandle<BusWorkerApi>

function describeOffset(ms: number): string {
  const size = Math.abs(ms) >= MINUTE ? `${Math.abs(ms) / MINUTE} min` : `${Math.abs(ms) / 1000} s`
  return `clock ${size} ${ms > 0 ? 'ahead' : 'behind'}`
}

function workerInit(redis: TestRedis, prefix: string, extra: Partial<BusWorkerInit> = {}): BusWorkerInit {
  return {
    redisUrl: redis.url,
    prefix,
    channel: `${prefix}bus`,
    signingSecret: SECRET,
    heartbeatMs: HEARTBEAT_MS,
    commandTimeout: 1000,
    ...extra,
  }
}

describe('bus between processes whose clocks are minutes apart', () => {
  let redis: TestRedis
  let writer: Instance
  let skewed: { offset: number; worker: Worker }[] = []

  beforeAll(async () => {
    redis = await spawnTestRedis()
    const client = redis.createClient({ commandTimeout: 3000 })
    client.on('error', () => {})
    writer = await startInstance(client, 'skew:', {
      bus: { signingSecret: SECRET, heartbeatMs: HEARTBEAT_MS },
    })
    skewed = await Promise.all(
      OFFSETS.map(async (offset) => ({
        offset,
        worker: await forkWorker<BusWorkerApi, BusWorkerInit>(
          WORKER,
          workerInit(redis, 'skew:', { clockOffsetMs: offset }),
        ),
      })),
    )
  })

  afterAll(async () => {
    await Promise.all(skewed.map(({ worker }) => worker.stop().catch(() => worker.kill())))
    await writer?.close()
    await redis?.close()
  })

  const received = async (worker: Worker) => (await worker.call('stats')).bus.received

  it('a receiver whose clock is off by ±40 s or ±10 min applies every message', async () => {
    await writer.stack.set('catalog', 'v1')
    for (const { worker } of skewed) expect(await worker.call('get', 'catalog')).toBe('v1')
    const before = await Promise.all(skewed.map(({ worker }) => received(worker)))
    await writer.stack.delete('catalog')
    for (const [i, { offset, worker }] of skewed.entries()) {
      await eventually(
        async () =>
          (await received(worker)) > before[i]! && (await worker.call('inMemory', 'catalog')) === undefined,
        `the receiver with its ${describeOffset(offset)} applies the delete`,
        5000,
      )
    }
  })

  it('a sender whose clock is off by ±40 s or ±10 min invalidates every other instance’s memory', async () => {
    for (const { offset, worker: sender } of skewed) {
      const key = `from${offset}`
      await writer.stack.set(key, 'v1')
      const others = skewed.filter(({ worker }) => worker !== sender)
      for (const { worker } of others) expect(await worker.call('get', key)).toBe('v1')
      expect(inMemory(writer, key)).toBeDefined()
      const writerBefore = writer.bus.stats.received
      const before = await Promise.all(others.map(({ worker }) => received(worker)))
      await sender.call('delete', key)
      await eventually(
        () => writer.bus.stats.received > writerBefore && inMemory(writer, key) === undefined,
        `an instance with the real clock applies the delete of the sender with its ${describeOffset(offset)}`,
        5000,
      )
      for (const [i, { offset: own, worker }] of others.entries()) {
        await eventually(
          async () =>
            (await received(worker)) > before[i]! && (await worker.call('inMemory', key)) === undefined,
          `the ${describeOffset(own)} applies the delete of the sender with its ${describeOffset(offset)}`,
          5000,
        )
      }
    }
  })

  it('no message is refused for its timestamp, and every instance hears its own heartbeat', async () => {
    // Leaving out `beforeJoin`: a peer's heartbeat signed just before it heard an instance join (an order
    // of events at startup, not a clock), which that peer's next message covers.
    const refusals = ({ beforeJoin: _, ...rejected }: Record<string, number>) =>
      Object.values(rejected).reduce((a, b) => a + b, 0)
    expect(refusals(writer.bus.stats.rejected)).toBe(0)
    for (const { offset, worker } of skewed) {
      expect(refusals((await worker.call('stats')).bus.rejected), describeOffset(offset)).toBe(0)
      await eventually(
        async () => (await worker.call('stats')).bus.healthy,
        `${describeOffset(offset)}: healthy`,
      )
    }
  })
})

describe('heartbeat liveness when the wall clock steps', () => {
  // Slower than above: a loaded machine must not delay an echo past the timeout (3 beats) by itself.
  const heartbeatMs = 250
  let redis: TestRedis
  let proxy: TcpProxyHandle
  let worker: Worker

  beforeEach(async () => {
    redis = await spawnTestRedis()
    proxy = await startTcpProxy({ targetPort: redis.server!.port })
    worker = await forkWorker<BusWorkerApi, BusWorkerInit>(
      WORKER,
      workerInit(redis, 'step:', { subscriberUrl: proxy.url, heartbeatMs }),
    )
  })

  afterEach(async () => {
    await worker.stop().catch(() => worker.kill())
    await proxy.close()
    await redis.close()
  })

  it('a clock stepped back by 10 min does not hide a partitioned subscriber', async () => {
    await worker.call('shiftClock', -10 * MINUTE)
    const detected = nextUnverified(worker, ['heartbeat'], 'the partition is detected by the heartbeat')
    proxy.blackhole()
    await detected
    const back = nextUnverified(worker, ['reconnect'], 'the subscription comes back')
    proxy.restore()
    await back
  })

  it('a clock stepped forward by 10 min is not taken for a lost heartbeat', async () => {
    const reasons: string[] = []
    worker.on('unverified', (event) => reasons.push((event as { reason: string }).reason))
    const listener = redis.createClient()
    let heartbeats = 0
    listener.on('message', (_channel, message: string) => {
      const body = JSON.parse(message.slice(message.indexOf('.', message.indexOf('.') + 1) + 1))
      if (body.o === null) heartbeats++
    })
    await listener.subscribe('step:bus')
    await worker.call('shiftClock', 10 * MINUTE)
    const seen = heartbeats
    // Each beat checks for its echo right after sending: three more sent means at least two checks since.
    await eventually(() => heartbeats >= seen + 3, 'three heartbeats after the step')
    await worker.call('stats') // its events were sent before this reply
    expect(reasons).not.toContain('heartbeat')
    listener.disconnect()
  })
})
