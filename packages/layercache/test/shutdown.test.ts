import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
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
