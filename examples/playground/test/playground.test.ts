import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runProcess } from '@layercache/test-utils'
import { afterAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../..', import.meta.url))

function pnpm(args: string[], cwd = root) {
  return runProcess('pnpm', args, { cwd })
}

const scratch: string[] = []
afterAll(() => Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true }))))

describe('pnpm playground', () => {
  it('runs src/try.ts against the sources: a stack over Redis, a load, a hit, a tag invalidation', async () => {
    const { code, stdout, stderr } = await pnpm(['playground'])
    expect(stderr).toBe('')
    expect(code).toBe(0)
    expect(stdout.split('\n')[0]).toMatch(/^Redis: /) // nothing of pnpm before it
    expect(stdout).toContain('loadedAt: 2')
    expect(stdout).toContain('loaderCalls: 2')
  })

  it('runs a file outside the workspace packages, with layercache and ioredis resolvable from it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'layercache-playground-'))
    scratch.push(dir)
    const file = join(dir, 'mine.mts')
    await writeFile(
      file,
      [
        "import { Redis } from 'ioredis'",
        "import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'",
        'const stack = new CacheStack([new MemoryLayer({ ttl: 1000 })])',
        "const value = await stack.getOrSet('k', async () => process.argv[2])",
        "console.log('value ' + value + ', ' + typeof Redis + ', ' + typeof RedisLayer)",
        '',
      ].join('\n'),
    )
    const { code, stdout, stderr } = await pnpm(
      ['playground', file, 'from-args'],
      join(root, 'packages/core'),
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    expect(stdout.trim()).toBe('value from-args, function, function')
  })

  it('says so when the file does not exist', async () => {
    const { code, stderr } = await pnpm(['playground', 'no-such-file.ts'])
    expect(code).toBe(2)
    expect(stderr.trim()).toBe(`playground: no file at ${join(root, 'no-such-file.ts')}`)
  })
})
