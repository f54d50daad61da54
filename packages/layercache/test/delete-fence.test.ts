import { describe, expect, it } from 'vitest'
import { useRedisTargets } from './support/redis-targets'

const setup = useRedisTargets('delfence')

function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

describe.each(['standalone', 'cluster'] as const)('a delete on another instance, %s', (target) => {
  it('fences a load that began before it: the old value is never written back', async () => {
    const { a, b, redisOnly } = setup(target)
    const { opened, open } = gate()
    const began = gate()
    const loading = a.getOrSet('price:1', async () => {
      began.open()
      await opened
      return 'old price'
    })
    await began.opened // the loader runs only once the load's fence snapshot is in Redis
    await b.delete('price:1')
    open()
    expect(await loading).toBe('old price')
    expect(await redisOnly().get('price:1')).toBeUndefined()
    expect(await a.get('price:1')).toBeUndefined()
    expect(a.getStats().fencedWrites).toBe(1)
  })

  it('does not fence a load of another key, nor a load that began after it', async () => {
    const { a, b, redisOnly } = setup(target)
    await b.delete('price:1')
    expect(await a.getOrSet('price:1', () => 'new price')).toBe('new price')
    const { opened, open } = gate()
    const began = gate()
    const loading = a.getOrSet('price:2', async () => {
      began.open()
      await opened
      return 'p2'
    })
    await began.opened // the loader runs only once the load's fence snapshot is in Redis
    await b.delete('price:3')
    open()
    await loading
    expect(await redisOnly().mget(['price:1', 'price:2'])).toEqual(['new price', 'p2'])
  })

  it('holds over many rounds: no load that began before a delete leaves its value (race loop)', async () => {
    const { a, b, redisOnly } = setup(target)
    let resurrected = 0
    for (let i = 0; i < 200; i++) {
      const key = `k${i}`
      let deleteStarted = false
      let loadedBeforeDelete = false
      const loading = a.getOrSet(key, async () => {
        loadedBeforeDelete = !deleteStarted
        for (let turn = 0; turn < i % 6; turn++) await new Promise((resolve) => setImmediate(resolve))
        return 'old'
      })
      for (let turn = 0; turn < i % 4; turn++) await new Promise((resolve) => setImmediate(resolve))
      deleteStarted = true
      await b.delete(key)
      await loading
      // A loader that ran before the delete started produced data the delete meant to remove.
      if (loadedBeforeDelete && (await redisOnly().get(key)) === 'old') resurrected++
    }
    expect(resurrected).toBe(0)
  })
})

describe.each(['standalone', 'cluster'] as const)('a set on another instance, %s', (target) => {
  it('fences a load that began before it: the older loaded value never overwrites the newer one', async () => {
    const { a, onOwnConnection, redisOnly } = setup(target)
    const other = onOwnConnection()
    try {
      const started = gate()
      const release = gate()
      const loading = a.getOrSet('stock:1', async () => {
        started.open() // the fence snapshot was taken before the loader ran
        await release.opened
        return 'read before the set'
      })
      await started.opened
      await other.stack.set('stock:1', 'newer')
      release.open()
      expect(await loading).toBe('read before the set')
      // Redis holds the newer value, or nothing (the refused write-back removes the key): never the older.
      expect(await redisOnly().get('stock:1')).not.toBe('read before the set')
      expect(await a.get('stock:1')).not.toBe('read before the set')
    } finally {
      await other.close()
    }
  })
})
