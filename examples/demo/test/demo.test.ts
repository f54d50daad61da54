import { fileURLToPath } from 'node:url'
import { runProcess } from '@layercache/test-utils'
import { describe, expect, it } from 'vitest'
import { runDemo } from '../src/demo'

const root = fileURLToPath(new URL('../../..', import.meta.url))

/** Runs a command at the repository root. */
function run(command: string, args: string[], env: Record<string, string> = {}) {
  return runProcess(command, args, { cwd: root, env })
}

describe('pnpm demo', () => {
  it('two instances over one Redis: layer hits, one load for a stampede, a delete carried by the bus', async () => {
    const lines: string[] = []
    const summary = await runDemo((line) => lines.push(line))
    const output = lines.join('\n')
    expect(summary.redis).toBe(true)
    // The stampede: 100 callers, one database query, 99 coalesced.
    expect(summary.stampede).toEqual({ callers: 100, queries: 1 })
    expect(output).toContain('100 callers got "Coffee grinder" from 1 database query: 99 of them waited')
    // B reads A's value from Redis, then from its own memory.
    expect(output).toContain("B: get product:1 -> Redis hit, copied into B's memory (price 349)")
    expect(output).toContain('B: get product:1 -> memory hit (price 349)')
    // A deletes once; B's memory dropped the key on the bus message, and B then reads the new price.
    expect(summary.busDropped).toBe(true)
    expect(output).toMatch(
      /B: heard it on the bus [\d.]+ ms after A's delete began .* dropped from B's memory/,
    )
    expect(output).not.toMatch(/delete.*\n.*B: delete/) // nobody deletes on B by hand
    expect(summary.priceAfterUpdate).toBe(299)
    expect(output).toContain('B: get product:1 -> not cached anywhere: loaded from the database (price 299)')
    // 1 (A's cold read) + 1 (the stampede) + 1 (B after the price change)
    expect(summary.dbQueries).toBe(3)

    // Every call lands in exactly one row; the table says so in words and shows these numbers.
    const { A, B } = summary.stats
    const memoryHits = (stats: typeof A) => stats.layers.find((layer) => layer.name === 'memory')?.hits
    const redisHits = (stats: typeof A) => stats.layers.find((layer) => layer.name === 'redis')?.hits
    expect([memoryHits(A), redisHits(A), A.misses, A.coalesced, A.peerInvalidations]).toEqual([
      1, 0, 2, 99, 0,
    ])
    expect([memoryHits(B!), redisHits(B!), B!.misses, B!.coalesced, B!.peerInvalidations]).toEqual([
      1, 1, 1, 0, 1,
    ])
    const row = (label: string) =>
      lines
        .find((line) => line.includes(label))
        ?.trim()
        .split(/\s{2,}/)
    expect(row('calls answered from memory (L1 hits)')).toEqual([
      'calls answered from memory (L1 hits)',
      '1',
      '1',
    ])
    expect(row('(L2 hits, copied into L1)')?.slice(1)).toEqual(['0', '1'])
    expect(row('(misses: database queries)')?.slice(1)).toEqual(['2', '1'])
    expect(row('(coalesced)')?.slice(1)).toEqual(['99', '0'])
    expect(row('hit rate')?.slice(1)).toEqual(['0.33', '0.67'])
    expect(row("other instance's bus messages")?.slice(1)).toEqual(['0', '1'])
    // The per-layer miss counts that read as a contradiction next to the hit rate are not shown.
    expect(output).not.toMatch(/misses 101/)
  })

  it('runs on the memory layer alone when there is no Redis, and says so', async () => {
    const lines: string[] = []
    const summary = await runDemo((line) => lines.push(line), { url: '', spawn: false })
    expect(summary.redis).toBe(false)
    expect(lines.join('\n')).toContain('running on the memory layer alone')
    expect(summary.stampede.queries).toBe(1)
    expect(summary.busDropped).toBeUndefined()
    expect(summary.priceAfterUpdate).toBe(299)
    expect(summary.stats.B).toBeUndefined()
  })

  it('pnpm demo prints the demo and nothing of pnpm before it', async () => {
    const { code, stdout } = await run('pnpm', ['demo'])
    expect(code).toBe(0)
    expect(stdout.split('\n')[0]).toMatch(/^layercache demo: /)
    expect(stdout).toContain('What getStats() counted')
  })

  it('REDIS_URL pointing nowhere: one line on stderr saying so, exit code 1, no ioredis event or stack', async () => {
    const { code, stdout, stderr } = await run('pnpm', ['demo'], { REDIS_URL: 'redis://127.0.0.1:1' })
    expect(code).toBe(1)
    expect(stdout).toBe('')
    const lines = stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^demo: Cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(REDIS_URL\): connect ECONNREFUSED/,
    )
  })
})
