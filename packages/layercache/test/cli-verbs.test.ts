import {
  freePort,
  getTestRedis,
  type RedisClusterHandle,
  spawnTestRedis,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer, RedisTagIndex } from '../src'
import { runCliInProcess, runCliProcess } from './support/cli-process'

/** Most calls run in this process; the ones that set environment variables run the bin (runCliProcess). */
const cli = runCliInProcess

const SECRET = 'cli-test-secret-0123456789'
/** How long to poll for a bus message to reach the instance (a bound, not a measurement). */
const POLL = { timeout: 10_000, interval: 20 }

let redis: TestRedis
let client: Redis
let n = 0
/** A fresh RedisLayer prefix (under the test Redis's own unique prefix), without its trailing ':'. */
const nextPrefix = () => `${redis.keyPrefix}verbs${++n}`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis?.close())

/** Every key under `prefix` (a test's own prefix on the test Redis). */
async function keysUnder(target: Redis | Cluster, prefix: string): Promise<string[]> {
  const nodes = target.isCluster ? (target as Cluster).nodes('master') : [target as Redis]
  const all = await Promise.all(nodes.map((node) => node.keys(`${prefix}*`)))
  return all.flat().sort()
}

/** `count` products (tagged by category, every third one compressed-size) written through a stack. */
async function seed(stack: CacheStack, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await stack.set(
      `product:${i}`,
      { id: i, name: `product ${i}`, blurb: 'x'.repeat(i % 3 === 0 ? 400 : 10) },
      { ttl: 600_000, tags: [`category:${i % 3}`, 'product'] },
    )
  }
}

describe('layercache --help and <verb> --help', () => {
  it('lists every verb with a one-line summary; each verb prints usage, options and examples', {
    timeout: 60_000,
  }, async () => {
    const help = await cli('--help')
    expect(help.code).toBe(0)
    for (const verb of ['stats', 'keys', 'inspect', 'invalidate', 'clear', 'migrate-tag-index']) {
      expect(help.stdout).toMatch(new RegExp(`^ {2}${verb} +\\S`, 'm'))
    }
    const expected: Record<string, string[]> = {
      stats: ['--key-prefix', '--tag-index-prefix', '--generation', '--json'],
      keys: ['--match <glob>', '--limit <n>', '--key-prefix', '--generation', '--json'],
      inspect: ['<key>', '--key-prefix', '--generation', '--json'],
      invalidate: [
        '--tag <t>',
        '--tag-mode <any|all>',
        '--prefix <p>',
        '--pattern <glob>',
        '--bus-channel',
        '--signing-secret',
        'LAYERCACHE_BUS_SECRET',
        '--tag-index-prefix',
        '--known-key-shards',
        '--no-bus',
      ],
      clear: ['--prefix', '--confirm <token>', '--allow-production'],
      'migrate-tag-index': ['--tag-index-prefix', '--known-key-shards', '--dry-run'],
    }
    for (const [verb, options] of Object.entries(expected)) {
      const run = await cli(verb, '--help')
      expect(run.code, verb).toBe(0)
      expect(run.stdout, verb).toContain(`Usage: layercache ${verb}`)
      for (const option of [
        ...options,
        '--redis <url>',
        '--cluster',
        '--tls',
        '--require-tls',
        '--production',
        '--allow-plaintext',
        '-h, --help',
      ]) {
        expect(run.stdout, `${verb} ${option}`).toContain(option)
      }
      if (verb !== 'migrate-tag-index' && verb !== 'clear') expect(run.stdout, verb).toContain('Examples:')
    }
  })
})

describe('layercache stats, keys and inspect (standalone)', () => {
  it('stats counts keys and tags from the key index and reports layout, generation, marks, Redis', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix, knownKeysShards: 4 })])
    await seed(stack, 30)
    await stack.set('user:1', { name: 'Ada' })
    const run = await cli('stats', '--redis', redis.url, '--key-prefix', prefix, '--json')
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const stats = JSON.parse(run.stdout)
    expect(stats).toMatchObject({
      keyPrefix: `${prefix}:`,
      keys: { count: 31, source: 'index', inGeneration: null },
      tags: { count: 4, dependencies: 0, source: 'index' },
      index: { prefix: `${prefix}:`, shared: false, layout: [4], shards: 4, legacySingleSet: null },
      generation: { key: `${prefix}:~gen`, current: null },
      dependencyMark: false,
      redis: { mode: 'standalone' },
    })
    expect(stats.redis.version).toMatch(/^\d+\.\d+/)
    expect(stats.redis.nodes).toHaveLength(1)
    expect(stats.redis.nodes[0].usedMemory).toBeGreaterThan(0)
    expect(stats.redis.nodes[0]).toHaveProperty('maxmemoryPolicy')

    // A dependency marks the prefix; the text report says where the numbers come from.
    await stack.set('page:home', 'home', { dependsOn: ['product:1'] })
    const text = await cli('stats', '--redis', redis.url, '--key-prefix', prefix)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('keys: 32 (counted in the known-keys index)')
    expect(text.stdout).toContain('tags: 4 (distinct tags of the indexed keys; 1 keys have dependents)')
    expect(text.stdout).toContain(`index: 4 shards at ${prefix}:~{${prefix}::<s>}k`)
    expect(text.stdout).toContain('generation: none recorded')
    expect(text.stdout).toContain('dependency mark: set')
    expect(text.stdout).toMatch(/redis: \d+\.\d+\.\d+, standalone/)
    expect(text.stdout).toMatch(/memory .+ used \(peak .+\)/)
  })

  it('keys lists keys from the index, without the prefix, sorted, matched and bounded', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix })])
    await seed(stack, 25)
    await stack.set('user:1', 1)
    const all = await cli('keys', '--redis', redis.url, '--key-prefix', prefix, '--json')
    expect(all.code).toBe(0)
    const listing = JSON.parse(all.stdout)
    expect(listing.source).toBe('index')
    expect(listing.truncated).toBe(false)
    expect(listing.keys).toHaveLength(26)
    expect(listing.keys).toEqual([...listing.keys].sort())
    expect(listing.keys).toContain('user:1')
    expect(listing.keys.every((key: string) => !key.startsWith(prefix))).toBe(true)

    const matched = await cli(
      'keys',
      '--redis',
      redis.url,
      '--key-prefix',
      prefix,
      '--match',
      'product:1?',
      '--limit',
      '4',
    )
    expect(matched.code).toBe(0)
    expect(matched.stdout).toBe('product:10\nproduct:11\nproduct:12\nproduct:13\n')
    expect(matched.stderr).toContain('4 keys from the known-keys index; more match: raise --limit')

    const none = await cli('keys', '--redis', redis.url, '--key-prefix', prefix, '--match', 'nothing:*')
    expect(none.code).toBe(0)
    expect(none.stdout).toBe('')
  })

  it('without a key index (keyIndex: false) stats and keys fall back to SCAN and say so', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix, keyIndex: false })])
    await seed(stack, 12)
    const stats = await cli('stats', '--redis', redis.url, '--key-prefix', prefix, '--json')
    expect(stats.code).toBe(0)
    expect(JSON.parse(stats.stdout)).toMatchObject({
      keys: { count: 12, source: 'scan' },
      tags: { count: 4, source: 'scan' },
      index: { layout: null, shards: 0 },
    })
    const keys = await cli('keys', '--redis', redis.url, '--key-prefix', prefix, '--match', 'product:1*')
    expect(keys.code).toBe(0)
    expect(keys.stdout).toBe('product:1\nproduct:10\nproduct:11\n')
    expect(keys.stderr).toContain('by SCAN (no key index)')
  })

  it('without --key-prefix and an index, stats counts only layercache entries, not every key of the database', {
    timeout: 60_000,
  }, async () => {
    // A database of its own: the test Redis may be shared, and this looks at every key.
    const own = await spawnTestRedis()
    try {
      const raw = own.createClient()
      // Another application's keys, some of them JSON: none is a cache entry.
      await raw.set('session:1', 'abc')
      await raw.set('visits', '42')
      await raw.set('doc', '{"a":1}')
      await raw.set('numbers', '[1,2,3]')
      await raw.hset('user:9', 'name', 'Ada')
      await raw.rpush('jobs', 'a', 'b')
      // The cache writes without a prefix and without an index (json, msgpack, compressed)…
      const compressed = { threshold: 200 } // every third product is larger than that
      await seed(
        new CacheStack([new RedisLayer({ client: raw, keyIndex: false, compression: compressed })]),
        6,
      )
      expect((await raw.getrangeBuffer('product:3', 0, 0)).toString()).toBe('Z')
      await new CacheStack([new RedisLayer({ client: raw, keyIndex: false, serializer: 'msgpack' })]).set(
        'one',
        1,
      )
      const run = await cli('stats', '--redis', own.url, '--json')
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      const stats = JSON.parse(run.stdout)
      expect(stats.keys).toMatchObject({ count: 7, source: 'scan', otherKeys: 6 })

      const text = await cli('stats', '--redis', own.url)
      expect(text.code).toBe(0)
      expect(text.stdout).toContain(
        'keys: 7 (no known-keys index: counted by SCAN of the keys under the prefix that hold layercache ' +
          'entries; 6 other keys there are not)',
      )
      expect(text.stdout).toContain('if your RedisLayer has a prefix, pass it with --key-prefix')
    } finally {
      await own.close()
    }
  })

  it('inspect decodes the stored envelope: value, tags, PTTL, freshness, size, encoding', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const layer = new RedisLayer({ client, prefix, compression: { threshold: 200 }, serializer: 'msgpack' })
    const stack = new CacheStack([layer])
    await seed(stack, 4)
    await stack.getOrSet('page:home', async () => ({ title: 'Home' }), {
      ttl: 60_000,
      staleWhileRevalidate: 30_000,
      tags: ['pages'],
    })
    const big = await cli('inspect', '--redis', redis.url, '--key-prefix', prefix, 'product:3', '--json')
    expect(big.stderr).toBe('')
    expect(big.code).toBe(0)
    const entry = JSON.parse(big.stdout)
    expect(entry).toMatchObject({
      key: 'product:3',
      redisKey: `${prefix}:product:3`,
      generation: null,
      value: { id: 3, name: 'product 3' },
      tags: ['category:0', 'product'],
      serializer: 'msgpack',
      compressed: true,
      absent: false,
    })
    expect(entry.bytes).toBe(await client.strlen(`${prefix}:product:3`))
    expect(entry.inflatedBytes).toBeGreaterThan(entry.bytes)
    expect(entry.pttl).toBeGreaterThan(0)
    expect(entry.pttl).toBeLessThanOrEqual(600_000)

    const page = await cli('inspect', '--redis', redis.url, '--key-prefix', prefix, 'page:home')
    expect(page.code).toBe(0)
    expect(page.stdout).toContain("value: { title: 'Home' }")
    expect(page.stdout).toContain('tags: pages')
    expect(page.stdout).toMatch(/ttl: \d+ ms left \(PTTL\); expires /)
    expect(page.stdout).toMatch(/created: \d{4}-/)
    expect(page.stdout).toMatch(/fresh until: \d{4}-/)
    expect(page.stdout).toContain('encoding: msgpack, not compressed')
    expect(page.stdout).toMatch(/size: \d+ bytes stored/)

    const missing = await cli('inspect', '--redis', redis.url, '--key-prefix', prefix, 'product:99')
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain(`no entry at "${prefix}:product:99"`)
  })

  it('generations: keys, inspect and stats read "g<n>:" with --generation (a number or current)', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix })], { generation: 0 })
    await seed(stack, 3)
    expect(await stack.bumpGeneration()).toBe(1)
    await stack.set('product:0', { id: 0, generation: 1 })
    const base = ['--redis', redis.url, '--key-prefix', prefix]

    const current = await cli('keys', ...base, '--generation', 'current')
    expect(current.code).toBe(0)
    expect(current.stdout).toBe('product:0\n')
    const old = await cli('keys', ...base, '--generation', '0')
    expect(old.stdout).toBe('product:0\nproduct:1\nproduct:2\n')

    const inspected = await cli('inspect', ...base, '--generation', 'current', 'product:0', '--json')
    expect(inspected.code).toBe(0)
    expect(JSON.parse(inspected.stdout)).toMatchObject({
      redisKey: `${prefix}:g1:product:0`,
      generation: 1,
      value: { id: 0, generation: 1 },
    })
    const hint = await cli('inspect', ...base, 'product:0')
    expect(hint.code).toBe(1)
    expect(hint.stderr).toContain('records generation 1')
    expect(hint.stderr).toContain('--generation current')

    const stats = await cli('stats', ...base, '--json')
    expect(JSON.parse(stats.stdout)).toMatchObject({
      keys: { count: 4, inGeneration: { generation: 1, count: 1 } },
      generation: { current: 1 },
    })
  })

  it('bad input exits 2 with the reason and the usage, and changes nothing', {
    timeout: 120_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix })])
    await seed(stack, 6)
    const before = await keysUnder(client, `${prefix}:`)
    const base = ['--redis', redis.url, '--key-prefix', prefix]
    const cases: [string[], string][] = [
      [['stats', '--key-prefix', prefix], '--redis <url> is required'],
      [['stats', ...base, '--bogus'], "'--bogus'"],
      [['stats', ...base, '--generation', 'latest'], '--generation: expected a whole number or "current"'],
      [['keys', ...base, '--limit', '0'], '--limit'],
      [['keys', ...base, '--limit', '1000001'], '--limit: at most'],
      [['keys', ...base, '--match', ''], '--match'],
      [['keys', ...base, 'extra'], 'unexpected argument "extra"'],
      [['keys', '--redis', redis.url, '--key-prefix', 'a\u0001b'], '--key-prefix'],
      [['inspect', ...base], '<key> is required'],
      [['inspect', ...base, 'a', 'b'], 'unexpected argument "b"'],
      [['inspect', ...base, '~{x}k'], "layer's own indexes"],
      [['invalidate', ...base], 'say what to invalidate'],
      [['invalidate', ...base, '--tag', 'product', '--prefix', 'p'], 'not --tag and --prefix'],
      [['invalidate', ...base, '--tag', 'product', '--tag-mode', 'some'], '--tag-mode: expected any or all'],
      [['invalidate', ...base, '--prefix', 'p', '--tag-mode', 'all'], '--tag-mode goes with --tag'],
      [['invalidate', ...base, '--pattern', 'a\u0007*'], '--pattern'],
      [['invalidate', ...base, '--tag', ''], '--tag'],
      [['invalidate', ...base, '--tag', 'product', '--known-key-shards', 'x'], '--known-key-shards'],
      [['invalidate', ...base, '--tag', 'product', '--no-bus', '--bus-channel', 'c'], '--no-bus'],
      [['invalidate', ...base, '--tag', 'product', '--signing-secret', 'short'], 'signing'],
      [['invalidate', ...base, '--prefix', 'product:', '--generation', '3'], 'the current generation is 0'],
      [['invalidate', ...base, '--tag', 'product', '--known-key-shards', '5000'], 'knownKeysShards'],
    ]
    for (const [args, message] of cases) {
      const run = await cli(...args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr, args.join(' ')).toContain(message)
      expect(run.stderr, args.join(' ')).toContain('Usage: layercache')
      expect(run.stdout, args.join(' ')).toBe('')
    }
    expect(await keysUnder(client, `${prefix}:`)).toEqual(before)
  })
})

describe('layercache invalidate, end to end with a running instance', () => {
  /** An app instance: memory over Redis, with a signed bus, as docs/distributed.md sets it up. */
  async function appInstance(prefix: string, channel: string, extra: { tagIndexPrefix?: string } = {}) {
    const subscriber = redis.createClient()
    const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel, signingSecret: SECRET })
    const memory = new MemoryLayer({ ttl: 600_000 })
    const stack = new CacheStack([memory, new RedisLayer({ client, prefix })], {
      invalidationBus: bus,
      ...(extra.tagIndexPrefix === undefined
        ? {}
        : { tagIndex: new RedisTagIndex({ client, prefix: extra.tagIndexPrefix }) }),
    })
    await bus.ready // the first subscription flushes memory: write after it
    const close = async () => {
      stack.close()
      await bus.close()
      subscriber.disconnect()
    }
    return { stack, memory, bus, close }
  }

  it('--tag: Redis loses the tagged keys and the running instance drops them from memory; the rest stays', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const channel = `${prefix}:bus`
    const app = await appInstance(prefix, channel)
    try {
      await seed(app.stack, 9)
      expect(app.memory.has('product:1')).toBe(true)
      const run = await runCliProcess(
        { LAYERCACHE_BUS_SECRET: SECRET },
        'invalidate',
        '--redis',
        redis.url,
        '--key-prefix',
        prefix,
        '--bus-channel',
        channel,
        '--tag',
        'category:1',
      )
      expect(run.stderr).toContain('tag "category:1"')
      expect(run.code).toBe(0)
      expect(run.stdout).toContain('removed 3 keys')
      expect(run.stdout).toContain(`announced on "${channel}" (signed)`)
      for (const i of [1, 4, 7]) expect(await client.exists(`${prefix}:product:${i}`)).toBe(0)
      await vi.waitFor(() => {
        for (const i of [1, 4, 7]) expect(app.memory.has(`product:${i}`)).toBe(false)
      }, POLL)
      // Only what the tag covered: the other categories stay in memory and in Redis.
      for (const i of [0, 2, 3, 5, 6, 8]) {
        expect(app.memory.has(`product:${i}`)).toBe(true)
        expect(await client.exists(`${prefix}:product:${i}`)).toBe(1)
      }
      expect(app.bus.stats.rejected.signature).toBe(0)
      expect(app.bus.stats.received).toBeGreaterThan(0)
      expect(await app.stack.get('product:1')).toBeUndefined()
    } finally {
      await app.close()
    }
  })

  it('--prefix and --pattern (with a RedisTagIndex), --json; a wrong secret is rejected by the instance', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const channel = `${prefix}:bus`
    const tagIndexPrefix = `${prefix}:tags`
    const app = await appInstance(prefix, channel, { tagIndexPrefix })
    try {
      await seed(app.stack, 12)
      await app.stack.set('user:1:profile', 'p1')
      await app.stack.set('user:1:cart', 'c1')
      const base = [
        'invalidate',
        '--redis',
        redis.url,
        '--key-prefix',
        prefix,
        '--tag-index-prefix',
        tagIndexPrefix,
        '--bus-channel',
        channel,
      ]
      const byPrefix = await runCliProcess(
        { LAYERCACHE_BUS_SECRET: SECRET },
        ...base,
        '--prefix',
        'user:1:',
        '--json',
      )
      expect(byPrefix.code).toBe(0)
      expect(JSON.parse(byPrefix.stdout)).toEqual({
        removed: 2,
        kind: 'prefix',
        bus: { channel, signed: true },
      })
      await vi.waitFor(() => expect(app.memory.has('user:1:cart')).toBe(false), POLL)
      expect(app.memory.has('user:1:profile')).toBe(false)
      expect(await keysUnder(client, `${prefix}:user:`)).toEqual([])

      // The secret on the command line works too; the pattern matches product:10 and product:11.
      const byPattern = await cli(...base, '--signing-secret', SECRET, '--pattern', 'product:1?')
      expect(byPattern.code).toBe(0)
      expect(byPattern.stdout).toContain('removed 2 keys')
      await vi.waitFor(() => expect(app.memory.has('product:10')).toBe(false), POLL)
      expect(app.memory.has('product:11')).toBe(false)
      expect(app.memory.has('product:1')).toBe(true)
      expect(await client.exists(`${prefix}:product:11`)).toBe(0)
      expect(await client.exists(`${prefix}:product:1`)).toBe(1)

      // Signed with another secret: Redis changes, the instance refuses the message (and counts it).
      const rejectedBefore = app.bus.stats.rejected.signature
      const wrong = await runCliProcess(
        { LAYERCACHE_BUS_SECRET: 'another-secret-0123456789' },
        ...base,
        '--tag',
        'category:2',
        '--tag',
        'product',
        '--tag-mode',
        'all',
      )
      expect(wrong.code).toBe(0)
      expect(wrong.stdout).toContain('removed 3 keys')
      await vi.waitFor(() => expect(app.bus.stats.rejected.signature).toBeGreaterThan(rejectedBefore), POLL)
      expect(app.memory.has('product:2')).toBe(true)
      expect(await client.exists(`${prefix}:product:2`)).toBe(0)
    } finally {
      await app.close()
    }
  })

  it('--generation current invalidates in the shared generation', { timeout: 60_000 }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix })], { generation: 0 })
    await stack.bumpGeneration()
    await seed(stack, 6)
    const run = await cli(
      'invalidate',
      '--redis',
      redis.url,
      '--key-prefix',
      prefix,
      '--no-bus',
      '--generation',
      'current',
      '--prefix',
      'product:',
    )
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('removed 6 keys')
    expect(run.stdout).toContain('not announced (--no-bus)')
    expect(await keysUnder(client, `${prefix}:g1:product:`)).toEqual([])
    expect(await client.get(`${prefix}:~gen`)).toBe('1')
  })
})

describe('TLS and production mode', () => {
  it('every verb refuses a plaintext redis:// URL in production mode, before connecting (exit 2)', {
    timeout: 120_000,
  }, async () => {
    const prefix = nextPrefix()
    const stack = new CacheStack([new RedisLayer({ client, prefix })])
    await seed(stack, 3)
    const before = await keysUnder(client, `${prefix}:`)
    const verbs: string[][] = [
      ['stats', '--key-prefix', prefix],
      ['keys', '--key-prefix', prefix],
      ['inspect', '--key-prefix', prefix, 'product:1'],
      ['invalidate', '--key-prefix', prefix, '--tag', 'product', '--no-bus'],
      ['clear', '--key-prefix', prefix, '--confirm', 'YES_WIPE_ALL', '--allow-production'],
      ['migrate-tag-index', '--tag-index-prefix', prefix],
    ]
    const unreachable = `redis://ops:s3cret@127.0.0.1:${await freePort()}`
    for (const verb of verbs) {
      for (const [env, flags] of [
        [{ NODE_ENV: 'production' }, []],
        [{}, ['--production']],
      ] as [Record<string, string>, string[]][]) {
        const what = `${JSON.stringify(env)} ${verb.join(' ')} ${flags.join(' ')}`
        for (const url of env.NODE_ENV === undefined ? [redis.url] : [redis.url, unreachable]) {
          const run = await runCliProcess(env, verb[0]!, '--redis', url, ...verb.slice(1), ...flags)
          expect(run.code, what).toBe(2)
          expect(run.stderr, what).toContain('refusing plaintext')
          expect(run.stderr, what).toContain('--allow-plaintext')
          expect(run.stderr, what).not.toContain('s3cret')
          expect(run.stderr, what).not.toContain('cannot connect')
        }
      }
    }
    expect(await keysUnder(client, `${prefix}:`)).toEqual(before)

    // --allow-plaintext lets it through; --tls passes the policy (and then fails to handshake: exit 1).
    const allowed = await runCliProcess(
      { NODE_ENV: 'production' },
      'keys',
      '--redis',
      redis.url,
      '--key-prefix',
      prefix,
      '--allow-plaintext',
    )
    expect(allowed.code).toBe(0)
    expect(allowed.stdout).toContain('product:1')
    const tls = await runCliProcess(
      { NODE_ENV: 'production' },
      'stats',
      '--redis',
      unreachable,
      '--tls',
      '--require-tls',
    )
    expect(tls.code).toBe(1)
    expect(tls.stderr).toContain('cannot connect to Redis')
    const missingCa = await cli('stats', '--redis', redis.url, '--tls-ca', '/nonexistent/ca.pem')
    expect(missingCa.code).toBe(2)
    expect(missingCa.stderr).toContain('--tls-ca: cannot read')
  })
})

describe('the verbs against a Redis Cluster (--cluster)', () => {
  let cluster: RedisClusterHandle
  let clusterClient: Cluster
  let url: string
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    clusterClient = cluster.createClient()
    await clusterClient.set('warmup', '1')
    const node = cluster.startupNodes[0]!
    url = `redis://${node.host}:${node.port}`
  })
  afterAll(() => cluster?.stop())

  it('stats and keys read the index shards on every master; inspect and invalidate work too', {
    timeout: 60_000,
  }, async () => {
    const prefix = 'verbs-cluster'
    const stack = new CacheStack([new RedisLayer({ client: clusterClient, prefix })])
    await seed(stack, 40)
    const stats = await cli('stats', '--redis', url, '--cluster', '--key-prefix', prefix, '--json')
    expect(stats.stderr).toBe('')
    expect(stats.code).toBe(0)
    const parsed = JSON.parse(stats.stdout)
    expect(parsed).toMatchObject({
      redis: { mode: 'cluster' },
      keys: { count: 40, source: 'index' },
      tags: { count: 4 },
      index: { layout: [16], shards: 16 },
    })
    expect(parsed.redis.nodes).toHaveLength(3)

    const keys = await cli('keys', '--redis', url, '--cluster', '--key-prefix', prefix, '--json')
    expect(keys.code).toBe(0)
    expect(JSON.parse(keys.stdout).keys).toHaveLength(40)

    const inspected = await cli('inspect', '--redis', url, '--cluster', '--key-prefix', prefix, 'product:7')
    expect(inspected.code).toBe(0)
    expect(inspected.stdout).toContain("name: 'product 7'")

    const invalidated = await cli(
      'invalidate',
      '--redis',
      url,
      '--cluster',
      '--key-prefix',
      prefix,
      '--pattern',
      'product:3*',
    )
    expect(invalidated.stderr).not.toContain('cannot connect')
    expect(invalidated.code).toBe(0)
    expect(invalidated.stdout).toContain('removed 11 keys')
    expect(await keysUnder(clusterClient, `${prefix}:product:3`)).toEqual([])
    expect(await clusterClient.exists(`${prefix}:product:4`)).toBe(1)
  })
})
