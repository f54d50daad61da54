import { describe, expect, it } from 'vitest'
import { Generations } from '../src/generations'
import type { CacheLayer } from '../src/layer'

/** A shared layer whose generation reads answer (or fail) only when the test says so. */
function sharedSource() {
  const waiting: { resolve: (generation: number) => void; reject: (error: Error) => void }[] = []
  const source = {
    sharedGeneration: () => new Promise<number>((resolve, reject) => waiting.push({ resolve, reject })),
  } as unknown as CacheLayer
  return {
    source,
    reads: () => waiting.length,
    answerNext: (generation: number) => waiting.shift()!.resolve(generation),
    answerLast: (generation: number) => waiting.pop()!.resolve(generation),
    failNext: (error: Error) => waiting.shift()!.reject(error),
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

  // Found by the history checker (standalone-faults SEED=16001, 565091): a bump whose reply was lost moved
  // the fleet without telling anyone; the read beside a delete failed while the delete succeeded, and the
  // failure was taken as "nothing moved", so the delete resolved in a generation nobody reads any more.
  it('a failed read beside an operation vouches for nothing: it is read again once the operation is done', async () => {
    const { source, reads, answerNext, failNext } = sharedSource()
    const generations = new Generations(1, source, undefined, noHooks)
    answerNext(1)
    await generations.ready
    const ranIn: number[] = []
    const running = generations.around(async () => {
      ranIn.push(generations.current)
    })
    failNext(new Error('timed out'))
    await settled()
    expect(reads()).toBe(1) // read again, now the operation is over
    answerNext(2)
    await running
    expect(ranIn).toEqual([1, 2]) // redone in the generation it found
    const again = generations.around(async () => 'done')
    failNext(new Error('timed out'))
    await settled()
    answerNext(2)
    expect(await again).toBe('done') // nothing moved: the first run stands
  })

  it('an operation whose generation cannot be read at all fails, and a read answers nothing from it', async () => {
    const { source, answerNext, failNext } = sharedSource()
    const generations = new Generations(1, source, undefined, noHooks)
    answerNext(1)
    await generations.ready
    const down = new Error('Redis is down')
    const writing = generations.around(async () => 'written')
    failNext(down)
    await settled()
    failNext(down)
    await expect(writing).rejects.toBe(down)
    const reading = generations.guard(Promise.resolve('old'), undefined)
    failNext(down)
    await settled()
    failNext(down)
    await expect(reading).rejects.toBe(down)
    const confirming = generations.confirm()
    failNext(down)
    await expect(confirming).rejects.toBe(down)
    // A read that failed beside the value but answers afterwards decides: moved means a miss.
    const raced = generations.guard(Promise.resolve('old'), undefined)
    failNext(down)
    await settled()
    answerNext(2)
    expect(await raced).toBeUndefined()
    expect(generations.current).toBe(2)
  })

  it('a stored key or scope of a newer generation is a hint; of this one or an older one, nothing', async () => {
    const { source, reads, answerNext } = sharedSource()
    const generations = new Generations(3, source, undefined, noHooks)
    answerNext(3)
    await generations.ready
    expect(generations.named('g3:user:1')).toBe(false)
    expect(generations.named('g2:user:1')).toBe(false)
    expect(generations.named('user:1')).toBe(false)
    expect(reads()).toBe(0)
    expect(generations.named('g4:tenant:')).toBe(true)
    expect(reads()).toBe(1) // read from the shared layer, never taken from the message
    answerNext(4)
    await settled()
    expect(generations.current).toBe(4)
  })
})
