import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { eventually, spawnTestRedis, type TestRedis } from '@layercache/test-utils'
import { connectPostgres } from '@layercache/test-utils/example-postgres'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// A service is stopped with SIGTERM (docker stop, systemd, kill), sent to whatever started it: here
// `pnpm --filter … start`. pnpm passes it to its child only; a script run through `sh -c` without `exec`
// kept node running (serving, its table and keys left) after pnpm had gone.

const root = fileURLToPath(new URL('../../..', import.meta.url))
let redis: TestRedis
let pool: pg.Pool
const started: ChildProcess[] = []
/** The example's node process and table, to clean up after a failure. */
let leftover: { pid: number; table: string } | undefined

beforeAll(async () => {
  redis = await spawnTestRedis() // a server of its own: the test counts every key in it
  pool = await connectPostgres()
})
afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  if (leftover !== undefined) {
    if (alive(leftover.pid)) process.kill(leftover.pid, 'SIGKILL')
    await pool.query(`DROP TABLE IF EXISTS ${leftover.table}`)
  }
  await pool?.end()
  await redis?.close()
})

const tableExists = async (table: string) =>
  (await pool.query('SELECT 1 FROM pg_tables WHERE tablename = $1', [table])).rowCount === 1

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('examples/entities under SIGTERM', () => {
  it('SIGTERM to `pnpm … start` stops the service, drops its table and removes its keys', async () => {
    const child = spawn('pnpm', ['--silent', '--filter', '@layercache/example-entities', 'start'], {
      cwd: root,
      env: { ...process.env, REDIS_URL: redis.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    started.push(child)
    let output = ''
    child.stdout.on('data', (data) => (output += data))
    child.stderr.on('data', (data) => (output += data))
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    await eventually(() => output.includes('Serving until Ctrl-C'), 'the service to serve', {
      timeoutMs: 60_000,
      intervalMs: 50,
    })
    // "(table example_posts_<pid>_<run>: …": the node process's pid and its table.
    const table = /table (example_posts_(\d+)_\w+)/.exec(output)?.[1]
    const pid = Number(/example_posts_(\d+)_/.exec(output)?.[1])
    expect(table).toBeDefined()
    leftover = { pid, table: table! }
    expect(await tableExists(table!)).toBe(true)
    const raw = redis.createClient()
    expect(await raw.dbsize()).toBeGreaterThan(0)

    child.kill('SIGTERM')
    await exited
    // pnpm is gone; node cleans up and exits (a poll: nothing announces it to this process).
    await eventually(() => !alive(pid), `node (pid ${pid}) to exit`, { timeoutMs: 20_000, intervalMs: 50 })
    expect(await tableExists(table!)).toBe(false)
    expect(await raw.dbsize()).toBe(0)
  }, 90_000)
})
