import { type Cluster, Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import {
  freePort,
  getTestRedis,
  type RedisClusterHandle,
  type RedisServerHandle,
  RedisUnavailableForTestsError,
  spawnTestRedis,
  startRedisCluster,
  startRedisServer,
  type TestRedis,
} from '../src/index'

const TIMED_OUT = Symbol('timed out')

function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

describe('freePort', () => {
  it('returns a usable port', async () => {
    const port = await freePort()
    expect(port).toBeGreaterThan(0)
    expect(port).toBeLessThan(65536)
  })
})

describe('startRedisServer', () => {
  let server: RedisServerHandle
  const clients: Redis[] = []
  const connect = (): Redis => {
    const client = new Redis(server.url)
    // Killed/paused servers make ioredis emit connection errors; they are expected here.
    client.on('error', () => {})
    clients.push(client)
    return client
  }

  it('starts a server that answers SET/GET', async () => {
    server = await startRedisServer()
    cleanups.push(async () => {
      for (const client of clients) client.disconnect()
      await server.stop()
    })
    expect(server.running).toBe(true)
    expect(server.pid).toBeTypeOf('number')
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
    const client = connect()
    await client.set('greeting', 'hello')
    expect(await client.get('greeting')).toBe('hello')
  })

  it('pause() makes commands hang and resume() lets them complete', async () => {
    const [client] = clients
    server.pause()
    const pending = client!.get('greeting')
    expect(await within(pending, 300)).toBe(TIMED_OUT)
    server.resume()
    expect(await within(pending, 5000)).toBe('hello')
  })

  it('kill() crashes the server and restart() brings it back on the same port', async () => {
    const { port } = server
    const oldPid = server.pid!
    await server.kill()
    expect(server.running).toBe(false)
    expect(server.pid).toBeUndefined()
    expect(isProcessAlive(oldPid)).toBe(false)

    await server.restart()
    expect(server.running).toBe(true)
    expect(server.port).toBe(port)
    expect(server.pid).not.toBe(oldPid)
    const client = connect()
    // No persistence: the restarted server is empty.
    expect(await client.get('greeting')).toBeNull()
    await client.set('greeting', 'again')
    expect(await client.get('greeting')).toBe('again')
  })

  it('stop() ends the process', async () => {
    const pid = server.pid!
    await server.stop()
    expect(server.running).toBe(false)
    expect(isProcessAlive(pid)).toBe(false)
  })

  it('stop() also ends a paused server', async () => {
    const paused = await startRedisServer({ args: ['--maxmemory', '10mb'] })
    const pid = paused.pid!
    paused.pause()
    await paused.stop()
    expect(isProcessAlive(pid)).toBe(false)
  })

  it('fails clearly when the requested port is taken', async () => {
    const other = await startRedisServer()
    cleanups.push(() => other.stop())
    await expect(startRedisServer({ port: other.port })).rejects.toThrow(/port in use/)
  })
})

describe('startRedisCluster', () => {
  let cluster: RedisClusterHandle

  it('creates a 3-master cluster usable through an ioredis Cluster', async () => {
    cluster = await startRedisCluster()
    cleanups.push(() => cluster.stop())
    expect(cluster.nodes).toHaveLength(3)
    expect(cluster.startupNodes).toHaveLength(3)

    const client: Cluster = cluster.createClient()
    const keys = Array.from({ length: 30 }, (_, i) => `key:${i}`)
    for (const key of keys) await client.set(key, `value of ${key}`)
    for (const key of keys) expect(await client.get(key)).toBe(`value of ${key}`)

    const slots = new Set(await Promise.all(keys.map((key) => client.cluster('KEYSLOT', key))))
    expect(slots.size).toBeGreaterThan(1)
    // Keys landed on every master, so redirections to all nodes worked.
    const sizes = await Promise.all(client.nodes('master').map((node) => node.dbsize()))
    expect(sizes).toHaveLength(3)
    for (const size of sizes) expect(size).toBeGreaterThan(0)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(keys.length)
  })
})

describe('getTestRedis / spawnTestRedis', () => {
  it('returns a working client and a unique keyPrefix', async () => {
    const first: TestRedis = await getTestRedis()
    const second = await getTestRedis()
    cleanups.push(
      () => first.close(),
      () => second.close(),
    )
    expect(first.keyPrefix).not.toBe(second.keyPrefix)
    expect(first.keyPrefix).toMatch(/^t:.+:$/)
    if (!process.env.REDIS_URL) {
      expect(first.source).toBe('redis-server')
      expect(first.server?.running).toBe(true)
    }
    const client = first.createClient()
    const key = `${first.keyPrefix}probe`
    await client.set(key, '1', 'EX', 60)
    expect(await client.get(key)).toBe('1')
  })

  it('close() quits clients and stops the spawned server', async () => {
    const redis = await spawnTestRedis()
    const client = redis.createClient()
    expect(await client.ping()).toBe('PONG')
    const pid = redis.server!.pid!
    await redis.close()
    expect(client.status).toBe('end')
    expect(isProcessAlive(pid)).toBe(false)
    expect(() => redis.createClient()).toThrow(/after close/)
  })

  it('spawnTestRedis() fails with RedisUnavailableForTestsError when redis-server is missing', async () => {
    const path = process.env.PATH
    process.env.PATH = ''
    try {
      const attempt = spawnTestRedis()
      await expect(attempt).rejects.toBeInstanceOf(RedisUnavailableForTestsError)
      await expect(attempt).rejects.toThrow(/apt-get install redis-server/)
    } finally {
      process.env.PATH = path
    }
  })
})
