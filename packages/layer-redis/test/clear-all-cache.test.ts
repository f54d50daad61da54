import {
  InvalidOperationError,
  InvalidOptionError,
  LayerTimeoutError,
  LayerUnavailableError,
} from '@layercache/core'
import {
  type RedisClusterHandle,
  spawnTestRedis,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { CLEAR_ALL_CONFIRMATION, type ClearAllCacheOptions, clearAllCache, scanPattern } from '../src'

const redis = useRedisAndCluster()

afterEach(() => {
  vi.restoreAllMocks()
  vi.unstubAllEnvs()
})

type Client = Redis | Cluster

const masters = (client: Client): Redis[] =>
  client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]

/** Raw keys (as stored, whatever the client's ioredis keyPrefix) starting with `prefix`, on every master. */
async function count(client: Client, prefix: string): Promise<number> {
  let found = 0
  for (const node of masters(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', scanPattern(prefix), 'COUNT', 1000)
      cursor = next
      found += keys.length
    } while (cursor !== '0')
  }
  return found
}

async function fill(client: Client, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, (_, j) => `${prefix}${i + j}`)
    await Promise.all(batch.map((key) => client.set(key, 'v')))
  }
}

const confirm = CLEAR_ALL_CONFIRMATION

describe.each(['standalone', 'cluster'] as const)('clearAllCache on %s Redis', (target) => {
  const setup = () => {
    const client = redis.client(target)
    const base = redis.prefix(target, 'wipe')
    return { client, base }
  }

  it('removes every key under the prefix, in batches, and leaves another prefix untouched', async () => {
    const { client, base } = setup()
    await fill(client, `${base}app:`, 1200)
    await fill(client, `${base}other:`, 300)
    await fill(client, `${base}application:`, 20)
    // Glob syntax in a prefix only ever matches itself.
    await fill(client, `${base}a*:`, 5)

    const result = await clearAllCache({ client, keyPrefix: `${base}app:`, confirm, productionMode: false })
    expect(result).toEqual({ mode: 'scan', deleted: 1200, keyPrefix: `${base}app:` })
    expect(await count(client, `${base}app:`)).toBe(0)
    expect(await count(client, `${base}other:`)).toBe(300)
    expect(await count(client, `${base}application:`)).toBe(20)
    expect(await count(client, `${base}a*:`)).toBe(5)
  })

  it("adds the trailing ':' (prefix 'app' does not delete 'application:x')", async () => {
    const { client, base } = setup()
    await fill(client, `${base}app:`, 30)
    await fill(client, `${base}application:`, 10)
    await client.set(`${base}app`, 'the bare prefix is not under it')

    const result = await clearAllCache({ client, keyPrefix: `${base}app`, confirm, productionMode: false })
    expect(result).toEqual({ mode: 'scan', deleted: 30, keyPrefix: `${base}app:` })
    expect(await count(client, `${base}app:`)).toBe(0)
    expect(await count(client, `${base}application:`)).toBe(10)
    expect(await client.exists(`${base}app`)).toBe(1)
  })

  it('a SCAN step of more than 500 keys is unlinked in batches of at most 500', async () => {
    const { client, base } = setup()
    // More than 500 on each of the 3 masters of the Cluster too.
    const total = target === 'cluster' ? 2400 : 1200
    await fill(client, `${base}big:`, total)
    const sizes: number[] = []
    for (const node of masters(client)) {
      if (client.isCluster) {
        const pipeline = node.pipeline.bind(node)
        vi.spyOn(node, 'pipeline').mockImplementation((...args) => {
          const pipe = pipeline(...args)
          const exec = pipe.exec.bind(pipe)
          pipe.exec = ((...execArgs: Parameters<typeof exec>) => {
            sizes.push(pipe.length)
            return exec(...execArgs)
          }) as typeof pipe.exec
          return pipe
        })
      } else {
        const unlink = node.unlink.bind(node) as (...keys: unknown[]) => Promise<number>
        vi.spyOn(node, 'unlink').mockImplementation(((...keys: unknown[]) => {
          sizes.push(keys.length)
          return unlink(...keys)
        }) as typeof node.unlink)
      }
    }
    const result = await clearAllCache({
      client,
      keyPrefix: `${base}big`,
      confirm,
      productionMode: false,
      batchSize: 5000,
    })
    expect(result.deleted).toBe(total)
    expect(await count(client, `${base}big:`)).toBe(0)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(500)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(total)
    expect(sizes.length).toBeGreaterThanOrEqual(target === 'cluster' ? 6 : 3)
    if (!client.isCluster) expect(sizes).toEqual([500, 500, 200])
  })

  it('a small batchSize takes many SCAN steps and still removes everything', async () => {
    const { client, base } = setup()
    await fill(client, `${base}small:`, 700)
    await fill(client, `${base}kept:`, 50)
    const result = await clearAllCache({
      client,
      keyPrefix: `${base}small:`,
      confirm,
      productionMode: false,
      batchSize: 7,
    })
    expect(result.deleted).toBe(700)
    expect(await count(client, `${base}small:`)).toBe(0)
    expect(await count(client, `${base}kept:`)).toBe(50)
  })

  it('every guard throws InvalidOperationError before any Redis call, and deletes nothing', async () => {
    const { client, base } = setup()
    await fill(client, `${base}g:`, 40)
    const keyPrefix = `${base}g`
    const scans = masters(client).map((node) => vi.spyOn(node, 'scanBuffer'))
    const refused: [string, Record<string, unknown>][] = [
      ['a wrong token', { confirm: 'yes', productionMode: false }],
      ['the token in another case', { confirm: 'yes_wipe_all', productionMode: false }],
      ['the token with a space', { confirm: `${confirm} `, productionMode: false }],
      ['a missing token', { confirm: undefined, productionMode: false }],
      ['a token that is not a string', { confirm: true, productionMode: false }],
      ['production mode without allowProduction', { confirm, productionMode: true }],
      [
        'production mode with allowProduction false',
        { confirm, productionMode: true, allowProduction: false },
      ],
      ['allowProduction without the token', { confirm: 'nope', productionMode: true, allowProduction: true }],
    ]
    for (const [what, options] of refused) {
      const call = clearAllCache({ client, keyPrefix, ...options } as ClearAllCacheOptions)
      await expect(call, what).rejects.toBeInstanceOf(InvalidOperationError)
      await expect(call, what).rejects.toMatchObject({ code: 'INVALID_OPERATION' })
    }
    // NODE_ENV=production is production mode by default.
    vi.stubEnv('NODE_ENV', 'production')
    await expect(clearAllCache({ client, keyPrefix, confirm })).rejects.toThrow(/allowProduction: true/)
    for (const scan of scans) expect(scan).not.toHaveBeenCalled()
    expect(await count(client, `${base}g:`)).toBe(40)

    // The same calls with the opt-in go through.
    expect((await clearAllCache({ client, keyPrefix, confirm, allowProduction: true })).deleted).toBe(40)
    await fill(client, `${base}g:`, 3)
    vi.stubEnv('NODE_ENV', 'development')
    expect((await clearAllCache({ client, keyPrefix, confirm })).deleted).toBe(3)
    await fill(client, `${base}g:`, 2)
    vi.stubEnv('NODE_ENV', 'production')
    expect((await clearAllCache({ client, keyPrefix, confirm, productionMode: false })).deleted).toBe(2)
  })

  it('bad options throw InvalidOptionError and delete nothing', async () => {
    const { client, base } = setup()
    await fill(client, `${base}bad:`, 10)
    const keyPrefix = `${base}bad`
    const bad: [string, unknown][] = [
      ['no options', undefined],
      ['null', null],
      ['an unknown option', { client, keyPrefix, confirm, productionMode: false, prefix: 'x' }],
      ['no client', { keyPrefix, confirm, productionMode: false }],
      ['a client that is not one', { client: {}, keyPrefix, confirm, productionMode: false }],
      ['no keyPrefix', { client, confirm, productionMode: false }],
      ['a keyPrefix that is not a string', { client, keyPrefix: 5, confirm, productionMode: false }],
      ['a keyPrefix with a control character', { client, keyPrefix: 'a\nb', confirm, productionMode: false }],
      ['batchSize 0', { client, keyPrefix, confirm, productionMode: false, batchSize: 0 }],
      ['batchSize 1.5', { client, keyPrefix, confirm, productionMode: false, batchSize: 1.5 }],
      ['commandTimeout -1', { client, keyPrefix, confirm, productionMode: false, commandTimeout: -1 }],
      ['allowProduction "yes"', { client, keyPrefix, confirm, productionMode: true, allowProduction: 'yes' }],
      ['productionMode 1', { client, keyPrefix, confirm, productionMode: 1 }],
    ]
    for (const [what, options] of bad) {
      await expect(clearAllCache(options as ClearAllCacheOptions), what).rejects.toBeInstanceOf(
        InvalidOptionError,
      )
    }
    expect(await count(client, `${base}bad:`)).toBe(10)
  })

  const prefixedClients: [string, (client: Client, prefix: string) => Client][] =
    target === 'standalone'
      ? [['keyPrefix', (client, keyPrefix) => (client as Redis).duplicate({ keyPrefix })]]
      : [
          ['keyPrefix', (client, keyPrefix) => (client as Cluster).duplicate([], { keyPrefix })],
          [
            'redisOptions.keyPrefix (the nodes prefix too)',
            (client, keyPrefix) =>
              (client as Cluster).duplicate([], {
                redisOptions: { ...(client as Cluster).options.redisOptions, keyPrefix },
              }),
          ],
        ]

  describe.each(prefixedClients)('a client with an ioredis %s', (_, make) => {
    let prefixed: Client
    afterEach(() => prefixed?.disconnect())

    it('matches under its prefix and strips it before UNLINK (which ioredis prefixes again)', async () => {
      const { client, base } = setup()
      const clientPrefix = `${base}cp:`
      prefixed = make(client, clientPrefix)
      await fill(prefixed, 'sess:', 620)
      await fill(prefixed, 'other:', 15)
      await fill(client, `${base}sess:`, 12) // the same logical keys, outside the client's prefix
      expect(await count(client, `${clientPrefix}sess:`)).toBe(620)

      const result = await clearAllCache({
        client: prefixed,
        keyPrefix: 'sess',
        confirm,
        productionMode: false,
      })
      expect(result).toEqual({ mode: 'scan', deleted: 620, keyPrefix: 'sess:' })
      expect(await count(client, `${clientPrefix}sess:`)).toBe(0)
      expect(await count(client, `${clientPrefix}other:`)).toBe(15)
      expect(await count(client, `${base}sess:`)).toBe(12)
      expect(await prefixed.get('other:0')).toBe('v')
    })

    it("with keyPrefix '' it wipes the client's prefix only, never the database", async () => {
      const { client, base } = setup()
      const clientPrefix = `${base}cp:`
      prefixed = make(client, clientPrefix)
      await fill(prefixed, 'a:', 25)
      await fill(prefixed, 'b:', 25)
      await fill(client, `${base}outside:`, 7)

      const result = await clearAllCache({ client: prefixed, keyPrefix: '', confirm, productionMode: false })
      expect(result).toEqual({ mode: 'scan', deleted: 50, keyPrefix: '' })
      expect(await count(client, clientPrefix)).toBe(0)
      expect(await count(client, `${base}outside:`)).toBe(7)
    })
  })
})

describe('clearAllCache without a prefix: FLUSHDB, on a Redis this test started', () => {
  let own: TestRedis
  beforeAll(async () => {
    own = await spawnTestRedis()
  })
  afterAll(() => own?.close())

  it('refuses without the token or in production mode, then flushes only the selected database', async () => {
    const db0 = own.createClient()
    const db1 = own.createClient({ db: 1 })
    await fill(db0, 'any:', 130)
    await fill(db0, 'other-app:', 20)
    await fill(db1, 'kept:', 9)

    await expect(clearAllCache({ client: db0, keyPrefix: '', confirm: 'y' as never })).rejects.toThrow(
      /whole Redis database/,
    )
    await expect(
      clearAllCache({ client: db0, keyPrefix: '', confirm, productionMode: true }),
    ).rejects.toBeInstanceOf(InvalidOperationError)
    vi.stubEnv('NODE_ENV', 'production')
    await expect(clearAllCache({ client: db0, keyPrefix: '', confirm })).rejects.toBeInstanceOf(
      InvalidOperationError,
    )
    expect(await db0.dbsize()).toBe(150)

    const result = await clearAllCache({ client: db0, keyPrefix: '', confirm, allowProduction: true })
    expect(result).toEqual({ mode: 'flushdb', deleted: 150, keyPrefix: '' })
    expect(await db0.dbsize()).toBe(0)
    expect(await db1.dbsize()).toBe(9)
  })

  it('a lazily connected client is connected first', async () => {
    const lazy = own.createClient({ lazyConnect: true })
    await fill(own.createClient(), 'lazy:', 4)
    expect(lazy.status).toBe('wait')
    const result = await clearAllCache({ client: lazy, keyPrefix: 'lazy', confirm, productionMode: false })
    expect(result.deleted).toBe(4)
  })

  it('a paused Redis: LayerTimeoutError after commandTimeout; a closed client: LayerUnavailableError', async () => {
    const client = own.createClient({ maxRetriesPerRequest: 0 })
    await fill(client, 'p:', 3)
    own.server!.pause()
    try {
      const started = Date.now()
      await expect(
        clearAllCache({ client, keyPrefix: 'p', confirm, productionMode: false, commandTimeout: 200 }),
      ).rejects.toBeInstanceOf(LayerTimeoutError)
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      own.server!.resume()
    }
    const closed = own.createClient()
    await closed.quit()
    await expect(
      clearAllCache({ client: closed, keyPrefix: 'p', confirm, productionMode: false }),
    ).rejects.toBeInstanceOf(LayerUnavailableError)
  })
})

describe('clearAllCache without a prefix on a Redis Cluster this test started', () => {
  let cluster: RedisClusterHandle
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
  })
  afterAll(() => cluster?.stop())

  it('flushes every master and counts what they held', async () => {
    const client = cluster.createClient()
    await fill(client, 'k:', 300)
    const perNode = await Promise.all(client.nodes('master').map((node) => node.dbsize()))
    expect(perNode.filter((n) => n > 0).length).toBe(3)
    await expect(clearAllCache({ client, keyPrefix: '', confirm: 'YES' as never })).rejects.toBeInstanceOf(
      InvalidOperationError,
    )
    const result = await clearAllCache({ client, keyPrefix: '', confirm, productionMode: false })
    expect(result).toEqual({ mode: 'flushdb', deleted: 300, keyPrefix: '' })
    for (const node of client.nodes('master')) expect(await node.dbsize()).toBe(0)
  })
})
