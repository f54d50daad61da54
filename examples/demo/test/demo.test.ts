import { describe, expect, it } from 'vitest'
import { runDemo } from '../src/demo'

describe('pnpm demo', () => {
  it('shows L1 and L2 hits, a single-flighted stampede and an invalidation against real Redis', async () => {
    const lines: string[] = []
    const summary = await runDemo((line) => lines.push(line))
    expect(summary.redis).toBe(true)
    expect(summary.stampedeQueries).toBe(1)
    expect(summary.priceAfterUpdate).toBe(299)
    expect(summary.layerHits.memory).toBeGreaterThan(0)
    expect(lines.some((line) => line.includes('app B: hit  product:1 in redis'))).toBe(true)
    // 1 (cold read) + 1 (stampede) + 1 (after the price change)
    expect(summary.dbQueries).toBe(3)
  })

  it('runs on the memory layer alone when there is no Redis, and says so', async () => {
    const lines: string[] = []
    const summary = await runDemo((line) => lines.push(line), { url: '', spawn: false })
    expect(summary.redis).toBe(false)
    expect(lines[0]).toContain('running on the memory layer alone')
    expect(summary.stampedeQueries).toBe(1)
    expect(summary.priceAfterUpdate).toBe(299)
  })

  it('fails with a clear message when REDIS_URL points nowhere', async () => {
    await expect(runDemo(() => {}, { url: 'redis://127.0.0.1:1' })).rejects.toThrow(/Cannot reach Redis/)
  })
})
