/**
 * The CLI against a careless operator and a hostile Redis: an invalidation of the whole cache is guarded
 * as `clear` is (confirmation token, production opt-in, before connecting), and nothing read from Redis
 * reaches the terminal with its control characters (C0, DEL, C1, so no escape sequence) in text or JSON.
 */
import { deflateRawSync } from 'node:zlib'
import { freePort, getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CacheStack,
  CLEAR_ALL_CONFIRMATION,
  ENTRY_FORMAT_VERSION,
  layoutKeyOf,
  RedisLayer,
  shardsOf,
} from '../src'
import { type CliRun, runCliProcess } from './support/cli-process'

let redis: TestRedis
let client: Redis
let n = 0
/** A fresh RedisLayer prefix (under the test Redis's own unique prefix), with its trailing ':'. */
const nextPrefix = () => `${redis.keyPrefix}safe${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
})
afterAll(() => redis?.close())

/** Every key under `prefix` with its DUMP: what "nothing changed" compares. */
async function contents(prefix: string): Promise<[string, string | undefined][]> {
  const keys = (await client.keys(`${prefix}*`)).sort()
  const dumps = await Promise.all(keys.map((key) => client.dumpBuffer(key)))
  return keys.map((key, i) => [key, dumps[i]?.toString('hex')])
}

async function seed(prefix: string, count: number): Promise<void> {
  const stack = new CacheStack([new RedisLayer({ client, prefix })])
  for (let i = 0; i < count; i++) await stack.set(`user:${i}`, { i }, { tags: ['users'] })
}

/** Characters a terminal may act on (C0 but the line feeds the CLI writes itself, DEL, C1), by code. */
function controlsIn(text: string): number[] {
  const codes = [...text].map((char) => char.charCodeAt(0))
  return codes.filter((code) => (code < 0x20 && code !== 0x0a) || (code >= 0x7f && code <= 0x9f))
}

function expectPrintable(run: CliRun, what: string) {
  expect(controlsIn(run.stdout), `${what}: stdout`).toEqual([])
  expect(controlsIn(run.stderr), `${what}: stderr`).toEqual([])
}

describe('layercache invalidate of the whole cache is guarded like clear', () => {
  const WHOLE: [string, string[]][] = [
    ["--prefix ''", ['--prefix', '']],
    ["--pattern '*'", ['--pattern', '*']],
    ["--pattern '**'", ['--pattern', '**']],
    ["--pattern '?*'", ['--pattern', '?*']],
    ["--namespace ns --prefix ''", ['--namespace', 'ns', '--prefix', '']],
  ]

  it('refused without --confirm, or in production mode without --allow-production: exit 2, nothing touched', {
    timeout: 120_000,
  }, async () => {
    const prefix = nextPrefix()
    await seed(prefix, 12)
    const before = await contents(prefix)
    const base = ['invalidate', '--redis', redis.url, '--key-prefix', prefix, '--no-bus']
    for (const [label, target] of WHOLE) {
      const cases: [Record<string, string>, string[], RegExp][] = [
        [{}, [], new RegExp(`--confirm ${CLEAR_ALL_CONFIRMATION} is required; nothing was touched`)],
        [{}, ['--confirm', 'yes'], new RegExp(`--confirm must be exactly ${CLEAR_ALL_CONFIRMATION}`)],
        [
          {},
          ['--confirm', CLEAR_ALL_CONFIRMATION, '--production', '--allow-plaintext'],
          /production mode \(--production\): pass --allow-production/,
        ],
        [
          { NODE_ENV: 'production' },
          ['--confirm', CLEAR_ALL_CONFIRMATION, '--allow-plaintext'],
          /production mode \(NODE_ENV=production\): pass --allow-production/,
        ],
      ]
      for (const [env, extra, message] of cases) {
        const run = await runCliProcess(env, ...base, ...target, ...extra)
        const what = `${label} ${JSON.stringify(env)} ${extra.join(' ')}`
        expect(run.code, what).toBe(2)
        expect(run.stderr, what).toMatch(message)
        expect(run.stderr, what).toContain('every key')
        expect(run.stdout, what).toBe('')
      }
    }
    expect(await contents(prefix)).toEqual(before)
  })

  it('the guard comes before connecting: refused with exit 2 even when Redis is unreachable', {
    timeout: 60_000,
  }, async () => {
    const url = `redis://127.0.0.1:${await freePort()}`
    const run = await runCliProcess({}, 'invalidate', '--redis', url, '--no-bus', '--pattern', '*')
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('nothing was touched')
    expect(run.stderr).not.toContain('cannot connect')
  })

  it('with the token (and --allow-production in production mode) it runs; narrower targets need neither', {
    timeout: 120_000,
  }, async () => {
    const prefix = nextPrefix()
    const base = ['invalidate', '--redis', redis.url, '--key-prefix', prefix, '--no-bus']
    await seed(prefix, 6)
    const narrow = await runCliProcess({}, ...base, '--prefix', 'user:1')
    expect(narrow.code).toBe(0)
    expect(narrow.stdout).toContain('removed 1 keys')
    const confirmed = await runCliProcess({}, ...base, '--prefix', '', '--confirm', CLEAR_ALL_CONFIRMATION)
    expect(confirmed.stderr).toContain('every key')
    expect(confirmed.code).toBe(0)
    expect(confirmed.stdout).toContain('removed 5 keys')

    await seed(prefix, 6)
    const production = await runCliProcess(
      { NODE_ENV: 'production' },
      ...base,
      '--allow-plaintext',
      '--pattern',
      '*',
      '--confirm',
      CLEAR_ALL_CONFIRMATION,
      '--allow-production',
      '--json',
    )
    expect(production.code).toBe(0)
    expect(JSON.parse(production.stdout)).toMatchObject({ removed: 6, kind: 'pattern' })
    // The layer's own structures stay (the recorded index layout, for one).
    expect(await client.exists(layoutKeyOf(prefix))).toBe(1)
  })
})

describe('what comes from Redis is printed without control characters', () => {
  const EVIL = 'evil\u001b]0;owned\u0007\u001b[2J\nfake-line\u009b31m\u007f'

  it('keys: a key planted in the index, in text and JSON', { timeout: 60_000 }, async () => {
    const prefix = nextPrefix()
    await seed(prefix, 2)
    const [shard] = shardsOf(prefix, 16)
    await client.zadd(shard!.keysKey, 0, prefix + EVIL)
    const base = ['keys', '--redis', redis.url, '--key-prefix', prefix]

    const text = await runCliProcess({}, ...base)
    expect(text.code).toBe(0)
    expectPrintable(text, 'keys')
    // One line per key: the planted line feed does not forge a key of its own.
    expect(text.stdout.split('\n')).toEqual([
      'evil\\x1B]0;owned\\x07\\x1B[2J\\x0Afake-line\\x9B31m\\x7F',
      'user:0',
      'user:1',
      '',
    ])

    const json = await runCliProcess({}, ...base, '--json')
    expect(json.code).toBe(0)
    expectPrintable(json, 'keys --json')
    expect(JSON.parse(json.stdout).keys).toEqual([EVIL, 'user:0', 'user:1'])
  })

  it('inspect: a forged entry whose value and tags hold escape sequences, in text and JSON', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    const value = { title: EVIL, [EVIL]: 1 }
    await client.set(`${prefix}forged`, JSON.stringify([ENTRY_FORMAT_VERSION, 0, [EVIL, 'plain'], value]))
    const base = ['inspect', '--redis', redis.url, '--key-prefix', prefix, 'forged']

    const text = await runCliProcess({}, ...base)
    expect(text.code).toBe(0)
    expectPrintable(text, 'inspect')
    expect(text.stdout).toContain('tags: evil\\x1B]0;owned\\x07\\x1B[2J\\x0Afake-line\\x9B31m\\x7F, plain')

    const json = await runCliProcess({}, ...base, '--json')
    expect(json.code).toBe(0)
    expectPrintable(json, 'inspect --json')
    expect(JSON.parse(json.stdout)).toMatchObject({ value, tags: [EVIL, 'plain'] })
  })

  it('inspect: an entry that would inflate past 16 MiB is refused, not inflated', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    // 200 MB of one byte deflates to ~200 KB: the CLI must not build it.
    const bomb = deflateRawSync(Buffer.alloc(200 * 1024 * 1024, 0x20))
    await client.set(`${prefix}bomb`, Buffer.concat([Buffer.from('Z'), bomb]))
    const run = await runCliProcess({}, 'inspect', '--redis', redis.url, '--key-prefix', prefix, 'bomb')
    expect(run.code).not.toBe(0)
    expect(run.stderr).toContain('inflates past 16 MiB')
  })

  it('stats: an unreadable layout record is shown escaped, in text and JSON', {
    timeout: 60_000,
  }, async () => {
    const prefix = nextPrefix()
    await client.set(layoutKeyOf(prefix), EVIL)
    const base = ['stats', '--redis', redis.url, '--key-prefix', prefix]

    const text = await runCliProcess({}, ...base)
    expect(text.code).toBe(0)
    expectPrintable(text, 'stats')
    expect(text.stdout).toContain('layout record unreadable: evil\\x1B]0;owned')

    const json = await runCliProcess({}, ...base, '--json')
    expect(json.code).toBe(0)
    expectPrintable(json, 'stats --json')
    expect(JSON.parse(json.stdout).index.unreadableLayout).toBe(EVIL)
  })
})
