import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { getTestRedis, startTcpProxy, type TcpProxyHandle, type TestRedis } from '../src/index'

let redis: TestRedis
let proxy: TcpProxyHandle
const clients: Redis[] = []

beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(async () => {
  await redis?.close()
})
beforeEach(async () => {
  const target = new URL(redis.url)
  proxy = await startTcpProxy({
    targetHost: target.hostname.replace(/^\[|\]$/g, ''),
    targetPort: Number(target.port || 6379),
  })
})
afterEach(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await proxy.close()
})

/** A client of the test Redis (credentials and db kept) that goes through the proxy. */
function connect(opts: RedisOptions = {}): Redis {
  const url = new URL(redis.url)
  url.hostname = proxy.host
  url.port = String(proxy.port)
  const client = new Redis(url.toString(), opts)
  // Resets and refusals make ioredis emit connection errors; they are the point of these tests.
  client.on('error', () => {})
  clients.push(client)
  return client
}

function next(client: Redis, event: string): Promise<void> {
  return new Promise((resolve) => client.once(event, () => resolve()))
}

const key = (name: string) => `${redis.keyPrefix}proxy:${name}`

describe('startTcpProxy', () => {
  it('forwards commands and replies', async () => {
    expect(proxy.url).toBe(`redis://127.0.0.1:${proxy.port}`)
    const client = connect()
    await client.set(key('a'), 'through the proxy')
    expect(await client.get(key('a'))).toBe('through the proxy')
    expect(proxy.connections).toBe(1)
  })

  it('cut() resets every connection; the client reconnects through the proxy', async () => {
    const client = connect()
    await client.set(key('b'), 'kept')
    const idBefore = await client.client('ID')
    const closed = next(client, 'close')
    const ready = next(client, 'ready')
    proxy.cut()
    expect(proxy.connections).toBe(0)
    await closed
    await ready
    expect(await client.client('ID')).not.toBe(idBefore)
    expect(await client.get(key('b'))).toBe('kept')
    expect(proxy.connections).toBe(1)
  })

  it('blackhole() makes commands time out without closing; restore() makes the client reconnect', async () => {
    // Generous, since every command of this client is bound by it, not only the one sent into the blackhole.
    const client = connect({ commandTimeout: 1000 })
    await client.set(key('c'), 'before')
    const idBefore = await client.client('ID')
    let closes = 0
    client.on('close', () => closes++)
    proxy.blackhole()
    await expect(client.get(key('c'))).rejects.toThrow('Command timed out')
    expect(closes).toBe(0)
    expect(client.status).toBe('ready')
    expect(proxy.connections).toBe(1)

    const ready = next(client, 'ready')
    proxy.restore()
    await ready
    expect(closes).toBe(1)
    expect(await client.get(key('c'))).toBe('before')
    expect(await client.client('ID')).not.toBe(idBefore)
  })

  it('a connection opened during a blackhole is accepted but not served until restore()', async () => {
    proxy.blackhole()
    const client = connect()
    const pong = client.ping()
    // The proxy accepted it (it tells no one: polled, with a deadline a busy machine meets).
    await vi.waitFor(() => expect(proxy.connections).toBe(1), { timeout: 10_000, interval: 5 })
    expect(client.status).not.toBe('ready')
    proxy.restore()
    expect(await pong).toBe('PONG')
  })

  it('refuse() resets new connections but keeps open ones; accept() lets clients back in', async () => {
    const client = connect()
    expect(await client.ping()).toBe('PONG')
    proxy.refuse()
    const refused = connect({ lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    await expect(refused.connect()).rejects.toThrow()
    expect(await client.ping()).toBe('PONG')

    // The cut client's first reconnect attempt is refused too (a second 'close').
    const closedTwice = next(client, 'close').then(() => next(client, 'close'))
    proxy.cut()
    await closedTwice
    proxy.accept()
    await next(client, 'ready')
    expect(await client.ping()).toBe('PONG')
  })

  it('close() stops listening and closes every connection; it is idempotent', async () => {
    const client = connect({ retryStrategy: () => null })
    expect(await client.ping()).toBe('PONG')
    const ended = next(client, 'end')
    await proxy.close()
    await ended
    expect(proxy.connections).toBe(0)
    await proxy.close()
    const late = connect({ lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    await expect(late.connect()).rejects.toThrow()
  })
})
