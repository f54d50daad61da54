import { describe, expect, it } from 'vitest'
import { Generations } from '../src/generations'
import type { CacheLayer } from '../src/layer'

/** A shared layer whose generation reads answer only when the test says so. */
function sharedSource() {
  const waiting: ((generation: number) => void)[] = []
  const source = {
    sharedGeneration: () => new Promise<number>((resolve) => waiting.push(resolve)),
  } as unknown as CacheLayer
  return { source, answerNext: (generation: number) => waiting.shift()!(generation) }
}

describe('Generations', () => {
  it('never moves backwards when a read of the shared number answers after a newer one was learned', async () => {
    // Found by the history checker: the read began in generation 1, the bus said 2, the read answered 1,
    // and the stack went back to generation 1, whose old values were still in Redis.
    const { source, answerNext } = sharedSource()
    const moves: [number, number][] = []
    const generations = new Generations(1, source, undefined, {
      moved: (next, previous) => moves.push([next, previous]),
    })
    answerNext(1)
    await generations.ready
    const verifying = generations.verify()
    generations.learned(2)
    answerNext(1)
    expect(await verifying).toBe(false) // it moved while the read ran: what the read guarded is stale
    expect(generations.current).toBe(2)
    expect(moves).toEqual([[2, 1]])
  })

  it('moves forward to a newer shared number and says it moved', async () => {
    const { source, answerNext } = sharedSource()
    const generations = new Generations(1, source, undefined, { moved: () => {} })
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
