import {
  freePort,
  getTestRedis,
  type RedisClusterHandle,
  spawnTestRedis,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CliRun, runCliInProcess, runCliProcess } from './support/cli-process'

type Run = CliRun

/**
 * Runs the CLI in this process (support/cli-process.ts); cliWithEnv runs the bin from source, as
 * `node --conditions=@layercache/source --import tsx …/cli.ts …`.
 */
const cli: (...args: string[]) => Promise<Run> = runCliInProcess

/** The same in a process of its own, with `env` added to the environment (e.g. NODE_ENV). */
const cliWithEnv = runCliProcess

/** The single-set index of earlier versions, written raw: `count` keys (values and index entries). */
async function writeLegacy(client: Redis | Cluster, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const full = `${prefix}k:${i}`
    await client.set(full, 'v')
    await client.zadd(`${prefix}~{${prefix}}k`, 0, full)
    await client.zadd(`${prefix}~{${prefix}}kx`, 8.64e15, full)
  }
}

/** `count` keys `<prefix><i>`. */
async function fill(client: Redis | Cluster, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 200) {
    const batch = Array.from({ length: Math.min(200, count - i) }, (_, j) => `${prefix}${i + j}`)
    await Promise.all(batch.map((key) => client.set(key, 'v')))
  }
}

/** Keys matching `pattern` on every master. */
async function countKeys(client: Redis | Cluster, pattern: string): Promise<number> {
  const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]
  const counts = await Promise.all(nodes.map(async (node) => (await node.keys(pattern)).length))
  return counts.reduce((a, b) => a + b, 0)
}

let redis: TestRedis
let client: Redis
let n = 0
const nextPrefix = () => `${redis.keyPrefix}cli${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis?.close())

describe('the layercache CLI', () => {
  it('--help lists the commands; a command --help its options', async () => {
    const help = await cli('--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: layercache <command>')
    expect(help.stdout).toContain('migrate-tag-index')
    const verb = await cli('migrate-tag-index', '--help')
    expect(verb.code).toBe(0)
    for (const option of [
      '--redis',
      '--tag-index-prefix',
      '--known-key-shards',
      '--require-tls',
      '--dry-run',
    ]) {
      expect(verb.stdout).toContain(option)
    }
  })

  it('bad arguments print the reason and the usage, with exit code 2, and touch nothing', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    await writeLegacy(client, prefix, 3)
    const cases: [string[], string][] = [
      [[], 'Usage: layercache <command>'],
      [['frobnicate'], 'unknown command'],
      [['migrate-tag-index', '--tag-index-prefix', prefix], '--redis <url> is required'],
      [['migrate-tag-index', '--redis', redis.url], '--tag-index-prefix <prefix> is required'],
      [['migrate-tag-index', '--redis', redis.url, '--tag-index-prefix', prefix, '--bogus'], "'--bogus'"],
      [['migrate-tag-index', '--redis', 'not a url', '--tag-index-prefix', prefix], 'is not a URL'],
      [['migrate-tag-index', '--redis', 'http://x', '--tag-index-prefix', prefix], 'redis:// or rediss://'],
      [
        [
          'migrate-tag-index',
          '--redis',
          redis.url,
          '--tag-index-prefix',
          prefix,
          '--known-key-shards',
          'lots',
        ],
        '--known-key-shards',
      ],
      [
        [
          'migrate-tag-index',
          '--redis',
          redis.url,
          '--tag-index-prefix',
          prefix,
          '--known-key-shards',
          '2000',
        ],
        'knownKeysShards',
      ],
      [
        ['migrate-tag-index', '--redis', redis.url, '--tag-index-prefix', prefix, '--batch-size=0'],
        '--batch-size',
      ],
    ]
    for (const [args, message] of cases) {
      const run = await cli(...args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr, args.join(' ')).toContain(message)
      expect(run.stderr, args.join(' ')).toContain('Usage: layercache')
    }
    expect(await client.zcard(`${prefix}~{${prefix}}k`)).toBe(3)
    expect(await client.exists(`${prefix}~{${prefix}}layout`)).toBe(0)
  })

  it('--require-tls refuses a redis:// URL before connecting (exit 2), naming it without its password', async () => {
    const url = new URL(redis.url)
    url.username = 'ops'
    url.password = 's3cret'
    const run = await cli(
      'migrate-tag-index',
      '--redis',
      url.toString(),
      '--tag-index-prefix',
      'p',
      '--require-tls',
    )
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('--require-tls')
    expect(run.stderr).toContain('rediss://')
    expect(run.stderr).not.toContain('s3cret')
  })

  it('an unreachable Redis fails with exit code 1 and the reason', async () => {
    const port = await freePort()
    const run = await cli(
      'migrate-tag-index',
      '--redis',
      `redis://127.0.0.1:${port}`,
      '--tag-index-prefix',
      'p',
    )
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('cannot connect to Redis')
    expect(run.stderr).toContain('ECONNREFUSED')
  })

  it('--dry-run reports counts per shard and changes nothing; a run moves everything; again: nothing', async () => {
    const prefix = nextPrefix()
    await writeLegacy(client, prefix, 40)
    const base = [
      'migrate-tag-index',
      '--redis',
      redis.url,
      '--tag-index-prefix',
      prefix,
      '--known-key-shards',
      '4',
    ]
    const dry = await cli(...base, '--dry-run')
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('dry run: nothing changed')
    expect(dry.stdout).toContain(`${prefix}~{${prefix}}k (legacy): 40 entries`)
    expect(dry.stdout).toContain('would move 40 entries')
    expect(dry.stdout).toMatch(/shard 0: \d+/)
    expect(await client.zcard(`${prefix}~{${prefix}}k`)).toBe(40)
    expect(await client.exists(`${prefix}~{${prefix}}layout`)).toBe(0)

    const run = await cli(...base, '--batch-size', '15', '--json')
    expect(run.code).toBe(0)
    const report = JSON.parse(run.stdout)
    expect(report).toMatchObject({ dryRun: false, moved: 40, left: 0, layoutAfter: [4] })
    expect(report.perShard.reduce((a: number, b: number) => a + b, 0)).toBe(40)
    expect(run.stderr).toContain('moved 15, 25 left')
    expect(await client.exists(`${prefix}~{${prefix}}k`)).toBe(0)
    expect(await client.get(`${prefix}~{${prefix}}layout`)).toBe('4')
    let sharded = 0
    for (let s = 0; s < 4; s++) sharded += await client.zcard(`${prefix}~{${prefix}:${s}}k`)
    expect(sharded).toBe(40)

    const again = await cli(...base)
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('nothing to move')
  })
})

describe('layercache clear', () => {
  it('is listed in --help; clear --help names every option and says what no prefix does', async () => {
    const help = await cli('--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^ {2}clear +delete every key under a prefix/m)
    const verb = await cli('clear', '--help')
    expect(verb.code).toBe(0)
    for (const option of [
      '--redis',
      '--prefix',
      '--confirm <token>',
      'YES_WIPE_ALL',
      '--production',
      '--allow-production',
      'NODE_ENV=production',
      '--batch-size',
      '--cluster',
      '--require-tls',
      '--json',
      'FLUSHDB',
      'WHOLE',
    ]) {
      expect(verb.stdout).toContain(option)
    }
  })

  it('refuses without the exact token, or in production mode without --allow-production: exit 2, nothing touched', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    await fill(client, `${prefix}k:`, 25)
    const base = ['clear', '--redis', redis.url, '--prefix', prefix]
    const cases: [Record<string, string>, string[], RegExp][] = [
      [{}, base, /--confirm YES_WIPE_ALL is required; nothing was touched/],
      [{}, [...base, '--confirm', 'yes'], /--confirm must be exactly YES_WIPE_ALL; nothing was touched/],
      [{}, [...base, '--confirm', 'YES_WIPE_ALL '], /--confirm must be exactly YES_WIPE_ALL/],
      [{}, [...base, '--confirm=yes_wipe_all'], /--confirm must be exactly YES_WIPE_ALL/],
      [
        {},
        [...base, '--confirm', 'YES_WIPE_ALL', '--production'],
        /production mode \(--production\): pass --allow-production/,
      ],
      [
        { NODE_ENV: 'production' },
        [...base, '--confirm', 'YES_WIPE_ALL'],
        /production mode \(NODE_ENV=production\): pass --allow-production/,
      ],
      [{ NODE_ENV: 'production' }, [...base, '--allow-production'], /--confirm YES_WIPE_ALL is required/],
    ]
    for (const [env, args, message] of cases) {
      const run = await cliWithEnv(env, ...args)
      const what = `${JSON.stringify(env)} ${args.join(' ')}`
      expect(run.code, what).toBe(2)
      expect(run.stderr, what).toMatch(message)
      expect(run.stderr, what).toContain(`every key under "${prefix}"`)
      expect(run.stdout, what).toBe('')
    }
    expect(await countKeys(client, `${prefix}k:*`)).toBe(25)
    // No prefix: the refusal says the whole database would go.
    const whole = await cli('clear', '--redis', redis.url, '--confirm', 'no')
    expect(whole.code).toBe(2)
    expect(whole.stderr).toContain('the WHOLE Redis database')
    expect(await countKeys(client, `${prefix}k:*`)).toBe(25)
  })

  it('the guards come before connecting: refused with exit 2 even when Redis is unreachable', {
    timeout: 60_000,
  }, async () => {
    const url = `redis://127.0.0.1:${await freePort()}`
    for (const args of [
      ['--prefix', 'p'],
      ['--prefix', 'p', '--confirm', 'nope'],
      ['--prefix', 'p', '--confirm', 'YES_WIPE_ALL', '--production'],
    ]) {
      const run = await cli('clear', '--redis', url, ...args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr, args.join(' ')).toContain('nothing was touched')
      expect(run.stderr, args.join(' ')).not.toContain('cannot connect')
    }
    const reachable = await cli('clear', '--redis', url, '--prefix', 'p', '--confirm', 'YES_WIPE_ALL')
    expect(reachable.code).toBe(1)
    expect(reachable.stderr).toContain('cannot connect to Redis')
  })

  it('bad arguments exit 2 with the usage', { timeout: 60_000 }, async () => {
    const cases: [string[], string][] = [
      [['clear', '--prefix', 'p', '--confirm', 'YES_WIPE_ALL'], '--redis <url> is required'],
      [['clear', '--redis', redis.url, '--confirm', 'YES_WIPE_ALL', '--bogus'], "'--bogus'"],
      [
        ['clear', '--redis', redis.url, '--prefix', 'p', '--confirm', 'YES_WIPE_ALL', '--batch-size', '0'],
        '--batch-size',
      ],
      [['clear', '--redis', redis.url, '--prefix', 'a\nb', '--confirm', 'YES_WIPE_ALL'], '--prefix'],
      [
        ['clear', '--redis', 'http://x', '--prefix', 'p', '--confirm', 'YES_WIPE_ALL'],
        'redis:// or rediss://',
      ],
    ]
    for (const [args, message] of cases) {
      const run = await cli(...args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr, args.join(' ')).toContain(message)
      expect(run.stderr, args.join(' ')).toContain('Usage: layercache')
    }
  })

  it('--require-tls refuses a redis:// URL before connecting (exit 2), naming it without its password', async () => {
    const url = new URL(redis.url)
    url.username = 'ops'
    url.password = 's3cret'
    const run = await cli(
      'clear',
      '--redis',
      url.toString(),
      '--prefix',
      'p',
      '--confirm',
      'YES_WIPE_ALL',
      '--require-tls',
    )
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('--require-tls')
    expect(run.stderr).toContain('rediss://')
    expect(run.stderr).not.toContain('s3cret')
  })

  it('with --prefix removes only the keys under it (trailing ":" added); --json reports the count', async () => {
    const prefix = nextPrefix()
    await fill(client, `${prefix}app:`, 1200)
    await fill(client, `${prefix}application:`, 30)
    await fill(client, `${prefix}other:`, 40)
    const run = await cli(
      'clear',
      '--redis',
      redis.url,
      '--prefix',
      `${prefix}app`,
      '--confirm',
      'YES_WIPE_ALL',
      '--batch-size',
      '300',
      '--json',
    )
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout)).toEqual({ mode: 'scan', deleted: 1200, keyPrefix: `${prefix}app:` })
    expect(run.stderr).toContain(`wiping every key under "${prefix}app:"`)
    expect(await countKeys(client, `${prefix}app:*`)).toBe(0)
    expect(await countKeys(client, `${prefix}application:*`)).toBe(30)
    expect(await countKeys(client, `${prefix}other:*`)).toBe(40)

    // Production mode with the opt-in; the text report.
    const prod = await cliWithEnv(
      { NODE_ENV: 'production' },
      'clear',
      '--redis',
      redis.url,
      '--prefix',
      `${prefix}other:`,
      '--confirm',
      'YES_WIPE_ALL',
      '--allow-production',
      '--allow-plaintext',
    )
    expect(prod.code).toBe(0)
    expect(prod.stdout).toContain(`removed 40 keys under "${prefix}other:"`)
    expect(await countKeys(client, `${prefix}other:*`)).toBe(0)
    expect(await countKeys(client, `${prefix}application:*`)).toBe(30)
  })

  it("without --prefix (or --prefix '') FLUSHDB wipes the whole database, and says so (a Redis this test started)", async () => {
    const own = await spawnTestRedis()
    try {
      const db0 = own.createClient()
      const db1 = own.createClient({ db: 1 })
      await fill(db0, 'x:', 70)
      await fill(db1, 'kept:', 5)
      const run = await cli('clear', '--redis', own.url, '--confirm', 'YES_WIPE_ALL')
      expect(run.code).toBe(0)
      expect(run.stderr).toContain('wiping the WHOLE Redis database')
      expect(run.stdout).toContain('FLUSHDB wiped the whole Redis database (every master): 70 keys')
      expect(await db0.dbsize()).toBe(0)
      expect(await db1.dbsize()).toBe(5)

      await fill(db0, 'y:', 3)
      const empty = await cli(
        'clear',
        '--redis',
        own.url,
        '--prefix',
        '',
        '--confirm',
        'YES_WIPE_ALL',
        '--json',
      )
      expect(empty.code).toBe(0)
      expect(JSON.parse(empty.stdout)).toEqual({ mode: 'flushdb', deleted: 3, keyPrefix: '' })
      expect(await db0.dbsize()).toBe(0)
    } finally {
      await own.close()
    }
  })
})

describe('the layercache CLI against a Redis Cluster (--cluster)', () => {
  let cluster: RedisClusterHandle
  let clusterClient: Cluster
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    clusterClient = cluster.createClient()
    await clusterClient.set('warmup', '1')
  })
  afterAll(() => cluster?.stop())

  it('moves a legacy index into shards spread over the nodes', async () => {
    const prefix = 'cli-cluster:'
    await writeLegacy(clusterClient, prefix, 60)
    const node = cluster.startupNodes[0]!
    const run = await cli(
      'migrate-tag-index',
      '--redis',
      `redis://${node.host}:${node.port}`,
      '--cluster',
      '--tag-index-prefix',
      prefix,
      '--json',
    )
    expect(run.stderr).not.toContain('cannot connect')
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout)).toMatchObject({ moved: 60, left: 0, layoutAfter: [16] })
    expect(await clusterClient.exists(`${prefix}~{${prefix}}k`)).toBe(0)
    const perNode = await Promise.all(
      clusterClient
        .nodes('master')
        .map(async (master) => (await master.keys(`${prefix}~{${prefix}:*}k`)).length),
    )
    expect(perNode.filter((count) => count > 0).length).toBe(3)
  })

  it('clear --cluster removes the prefix on every master, and nothing else', async () => {
    await fill(clusterClient, 'cli-clear:', 900)
    await fill(clusterClient, 'cli-kept:', 60)
    const node = cluster.startupNodes[0]!
    const run = await cli(
      'clear',
      '--redis',
      `redis://${node.host}:${node.port}`,
      '--cluster',
      '--prefix',
      'cli-clear',
      '--confirm',
      'YES_WIPE_ALL',
      '--json',
    )
    expect(run.stderr).not.toContain('cannot connect')
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout)).toEqual({ mode: 'scan', deleted: 900, keyPrefix: 'cli-clear:' })
    expect(await countKeys(clusterClient, 'cli-clear:*')).toBe(0)
    expect(await countKeys(clusterClient, 'cli-kept:*')).toBe(60)
  })
})
