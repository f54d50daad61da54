// The history checker's latency injection on a real Redis and a real Cluster: commands are held back and
// reordered, yet every reply still reaches its own command, and pipelines, MULTI blocks and scripts stay
// whole.
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectLatency, Prng } from '../src/history'
import { type RedisClusterHandle, startRedisCluster } from '../src/redis-cluster'
import { getTestRedis, type TestRedis } from '../src/test-redis'

let redis: TestRedis
let cluster: RedisClusterHandle

beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([getTestRedis(), startRedisCluster({ masters: 3 })])
})
afterAll(async () => {
  await Promise.all([redis?.close(), cluster?.stop()])
})

/** Incrementing counters the same way on any client; returns the order in which Redis ran the INCRs. */
async function exercise(client: Redis | Cluster, prefix: string) {
  const order = `${prefix}{o}order`
  const sent = Array.from({ length: 40 }, (_, i) => client.rpush(order, String(i)))
  await Promise.all(sent)
  const ran = (await client.lrange(order, 0, -1)).map(Number)
  // Every reply belongs to its command: GETs of 30 keys set to their own names.
  await Promise.all(Array.from({ length: 30 }, (_, i) => client.set(`${prefix}k${i}`, `v${i}`)))
  const values = await Promise.all(Array.from({ length: 30 }, (_, i) => client.get(`${prefix}k${i}`)))
  expect(values).toEqual(Array.from({ length: 30 }, (_, i) => `v${i}`))
  // A pipeline and a MULTI block stay whole and in order.
  const pipeline = await client
    .pipeline()
    .set(`${prefix}{p}a`, '1')
    .incr(`${prefix}{p}a`)
    .get(`${prefix}{p}a`)
    .exec()
  expect(pipeline?.map(([error, value]) => [error, value])).toEqual([
    [null, 'OK'],
    [null, 2],
    [null, '2'],
  ])
  const multi = await client
    .multi()
    .set(`${prefix}{m}a`, 'x')
    .append(`${prefix}{m}a`, 'y')
    .get(`${prefix}{m}a`)
    .exec()
  expect(multi?.map(([, value]) => value)).toEqual(['OK', 2, 'xy'])
  // Scripts: the first call loads by EVAL, later ones go by EVALSHA.
  const script = 'return redis.call("INCRBY", KEYS[1], ARGV[1])'
  const results = await Promise.all(
    Array.from({ length: 5 }, () => client.eval(script, 1, `${prefix}{s}n`, 2)),
  )
  expect((results as number[]).sort((a, b) => a - b)).toEqual([2, 4, 6, 8, 10])
  return ran
}

describe('injectLatency', () => {
  it('delays and reorders the commands of one Redis connection, nothing else', async () => {
    const client = redis.createClient()
    const latency = injectLatency(client, { maxMs: 5, random: new Prng('latency-test') })
    const ran = await exercise(client, `${redis.keyPrefix}lat:`)
    expect(ran).not.toEqual([...ran].sort((a, b) => a - b))
    expect(latency.delayed).toBeGreaterThan(100)
    await latency.idle()
    expect(latency.inFlight).toBe(0)
    latency.remove()
    const before = latency.delayed
    await client.ping()
    expect(latency.delayed).toBe(before)
  })

  it("'fifo' keeps the issue order of one connection", async () => {
    const client = redis.createClient()
    const latency = injectLatency(client, { maxMs: 5, mode: 'fifo', random: new Prng('fifo-test') })
    const ran = await exercise(client, `${redis.keyPrefix}fifo:`)
    expect(ran).toEqual([...ran].sort((a, b) => a - b))
    latency.remove()
  })

  it('hooks every node connection of a Cluster, also the ones made later', async () => {
    const client = cluster.createClient()
    const latency = injectLatency(client, { maxMs: 5, random: new Prng('cluster-test') })
    const ran = await exercise(client, 'clat:')
    expect(ran).not.toEqual([...ran].sort((a, b) => a - b))
    expect(latency.delayed).toBeGreaterThan(100)
    latency.remove()
  })
})
