import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { eventually, spawnTestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { expect, it } from 'vitest'
import {
  type CacheEventMap,
  CacheStack,
  type LayerTimeoutError,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
} from '../src'
import { useStandaloneRedis } from './support/standalone-redis'

const { redis } = useStandaloneRedis()
const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const CHILD = 'packages/layercache/test/support/dispose-child.ts'

/**
 * Runs the child and resolves with its exit once it ends by itself; kills it (and says so) if it is
 * still running after `limitMs`, which only happens when something keeps the event loop alive.
 */
function runUntilExit(env: Record<string, string>, limitMs: number) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; killed: boolean }>(
    (resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=@layercache/source', '--import', 'tsx', CHILD], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      let killed = false
      child.stdout.on('data', (chunk) => (stdout += chunk))
      child.stderr.on('data', (chunk) => (stderr += chunk))
      const guard = setTimeout(() => {
        killed = true
        child.kill('SIGKILL')
      }, limitMs)
      child.on('error', reject)
      child.on('close', (code) => {
        clearTimeout(guard)
        resolve({ code, stdout, stderr, killed })
      })
    },
  )
}

it('a process exits by itself once its stacks, bus, coordinator and WriteBehind are disposed', {
  timeout: 90_000,
}, async () => {
  const run = await runUntilExit({ REDIS_URL: redis().url, KEY_PREFIX: `${redis().keyPrefix}exit:` }, 60_000)
  expect(run.stderr).toBe('')
  expect(run.killed).toBe(false)
  expect(run.code).toBe(0)
  expect(run.stdout.trim().split('\n')).toEqual([
    'loaded',
    'disposing',
    'hanging load: CacheClosedError',
    'disposed',
    'quit',
  ])
})

it('close() ends while Redis hangs: the bus and coordinator give up on their unsubscribe, each reported', async () => {
  // Found by trying it: with Redis paused, close() waited as long as the pause for UNSUBSCRIBE.
  const server = await spawnTestRedis()
  const clients = Array.from({ length: 4 }, () => server.createClient({ maxRetriesPerRequest: 1 }))
  for (const client of clients) client.on('error', () => {})
  const [main, busSubscriber, flightSubscriber, other] = clients as [Redis, Redis, Redis, Redis]
  try {
    const bus = new RedisInvalidationBus({
      publisher: main,
      subscriber: busSubscriber,
      channel: 'hang:bus',
      signingSecret: 'hang-test-secret-0123456789abcdef',
      publishTimeoutMs: 200,
    })
    const coordinator = (subscriber?: Redis) =>
      new RedisSingleFlightCoordinator({ client: main, subscriber, prefix: 'hang:sf:', commandTimeout: 200 })
    const stack = new CacheStack([new MemoryLayer(), new RedisLayer({ client: main, prefix: 'hang:' })], {
      invalidationBus: bus,
      singleFlightCoordinator: coordinator(flightSubscriber),
    })
    const holder = new CacheStack([new RedisLayer({ client: other, prefix: 'hang:' })], {
      singleFlightCoordinator: coordinator(),
    })
    await bus.ready
    // The stack's coordinator subscribes on its first wait: for a key another instance is loading.
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let started!: () => void
    const loading = new Promise<void>((resolve) => {
      started = resolve
    })
    const holding = holder.getOrSet('k', async () => {
      started()
      await held
      return 'v'
    })
    await loading
    const waiting = stack.getOrSet('k', () => 'not this one')
    const subscribed = async () =>
      String(await main.call('CLIENT', 'LIST'))
        .split('\n')
        .filter((line) => / sub=1 /.test(line)).length
    await eventually(async () => (await subscribed()) === 2, 'the coordinator subscribed (beside the bus)')
    release()
    expect(await Promise.all([holding, waiting])).toEqual(['v', 'v'])
    await holder.close()

    const errors: CacheEventMap['error'][] = []
    stack.on('error', (event) => errors.push(event))
    server.server!.pause()
    await stack.close({ abandonAfter: 0 })
    expect(
      errors.map(({ operation, layer, error }) => [operation, layer, (error as LayerTimeoutError).code]),
    ).toEqual([
      ['close', 'invalidationBus', 'LAYER_TIMEOUT'],
      ['close', 'singleFlightCoordinator', 'LAYER_TIMEOUT'],
    ])
  } finally {
    server.server!.resume()
    for (const client of clients) client.disconnect()
    await server.close()
  }
})
