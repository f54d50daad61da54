import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import {
  freePort,
  getTestRedis,
  type RedisClusterHandle,
  startRedisCluster,
  type TestRedis,
} from '@layercache/test-utils'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = 'packages/layercache/src/cli.ts'

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI from source, as `node --conditions=@layercache/source --import tsx …/cli.ts …`. */
function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@layercache/source', '--import', 'tsx', CLI, ...args],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** The single-set index of earlier versions, written raw: `count` keys (values and index entries). */
async function writeLegacy(client: Redis | Cluster, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const full = `${prefix}k:${i}`
    await client.set(full, 'v')
    await client.zadd(`${prefix}~{${prefix}}k`, 0, full)
    await client.zadd(`${prefix}~{${prefix}}kx`, 8.64e15, full)
  }
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

  it('bad arguments print the reason and the usage, with exit code 2, and touch nothing', async () => {
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
})
