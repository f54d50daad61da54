import { describe, expect, it } from 'vitest'
import { Generations } from '../src/generations'
import type { CacheLayer } from '../src/layer'

/** A shared layer whose generation reads answer only when the test says so. */
function sharedSource() {
  const waiting: ((generation: number) => void)[] = []
  const source = {
    sharedGeneration: () => new Promise<number>((resolve) => waiting.push(resolve)),
  } as unknown as CacheLayer
  return {
    source,
    reads: () => waiting.length,
    answerNext: (generation: number) => waiting.shift()!(generation),
    answerLast: (generation: number) => waiting.pop()!(generation),
  }
}

const noHooks = { moved: () => {}, refused: () => {} }
const settled = () => new Promise((resolve) => setImmediate(resolve))

describe('Generations', () => {
  it('never moves backwards when a read of the shared number answers after a newer one was adopted', async () => {
    // Found by the history checker: the read began in generation 1, the bus said 2, the read answered 1,
    // and the stack went back to generation 1, whose old values were still in Redis.
    const { source, answerNext, answerLast } = sharedSource()
    const moves: [number, number][] = []
    const generations = new Generations(1, source, undefined, {
      ...noHooks,
      moved: (next, previous) => moves.push([next, previous]),
    })
    answerNext(1)
    await generations.ready
    const verifying = generations.verify()
    expect(generations.hinted(2)).toBe(true) // a hint: read again, in a read of its own
    answerLast(2) // the hint's read answers first: the shared number did move
    await settled()
    answerNext(1) // the earlier read answers late, with the old number
    expect(await verifying).toBe(false) // it moved while the read ran: what the read guarded is stale
    expect(generations.current).toBe(2)
    expect(moves).toEqual([[2, 1]])
  })

  it('a hint is never adopted: the number comes from the shared layer, one read at a time', async () => {
    const { source, reads, answerNext } = sharedSource()
    const generations = new Generations(1, source, undefined, noHooks)
    answerNext(1)
    await generations.ready
    expect(generations.hinted(1)).toBe(false) // not newer: nothing to do
    expect(reads()).toBe(0)
    for (let i = 0; i < 5; i++) expect(generations.hinted(Number.MAX_SAFE_INTEGER)).toBe(true)
    expect(reads()).toBe(1) // one read under way, one more queued for the hints that came meanwhile
    answerNext(1)
    await settled()
    expect(reads()).toBe(1)
    answerNext(1)
    await settled()
    expect(reads()).toBe(0)
    expect(generations.current).toBe(1)
  })

  it('without a shared layer a hint moves nothing', () => {
    const generations = new Generations(1, undefined, undefined, noHooks)
    expect(generations.hinted(5)).toBe(true)
    expect(generations.current).toBe(1)
  })

  it('moves forward to a newer shared number and says it moved', async () => {
    const { source, answerNext } = sharedSource()
    const generations = new Generations(1, source, undefined, noHooks)
    answerNext(1)
    await generations.ready
    const verifying = generations.verify()
    answerNext(3)
    expect(await verifying).toBe(false)
    expect(generations.current).toBe(3)
    const again = generations.verify()
    answerNext(3)
    expect(await again).toBe(true)
  })
})
