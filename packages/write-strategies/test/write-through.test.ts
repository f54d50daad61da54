import { setTimeout as sleep } from 'node:timers/promises'
import {
  CacheStack,
  InvalidKeyError,
  InvalidOptionError,
  LayerCacheError,
  LayerUnavailableError,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, startRedisServer, type TestRedis } from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CacheInvalidationAfterWriteError, type WriteThroughOptions, writeThrough } from '../src'

let redis: TestRedis
let clients: Redis[]
let run = 0
beforeAll(async () => {
  redis = await getTestRedis()
  // Separate connections, like separate instances: their commands interleave on the server.
  clients = [redis.createClient(), redis.createClient(), redis.createClient()]
})
afterAll(() => redis.close())

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
})

/**
 * `count` app instances sharing one Redis namespace, each [MemoryLayer, RedisLayer] on its own
 * connection, and `view`: the shared layer alone (what every instance's next miss will read).
 */
function fleet(count = 2, { memory = true } = {}) {
  const prefix = `${redis.keyPrefix}wt${++run}`
  const stacks = Array.from({ length: count }, (_, i) => {
    const remote = new RedisLayer({ client: clients[i % clients.length]!, prefix })
    return new CacheStack(memory ? [new MemoryLayer(), remote] : [remote])
  })
  const view = new CacheStack([new RedisLayer({ client: clients[2]!, prefix })])
  return { stacks, view }
}

/** A fake database: rows by key, with a version bumped per write; every call yields first. */
class FakeDb {
  readonly rows = new Map<string, { value: unknown; version: number }>()
  writes = 0
  reads = 0
  async write(key: string, value: unknown) {
    await pause()
    this.writes++
    const version = (this.rows.get(key)?.version ?? 0) + 1
    this.rows.set(key, { value, version })
    return { rowCount: 1, version }
  }
  async read(key: string) {
    this.reads++
    const value = this.rows.get(key)?.value
    await pause()
    return value
  }
  value(key: string) {
    return this.rows.get(key)?.value
  }
}

/** A random yield: none, a microtask, a macrotask or a short timer. */
function pause(): Promise<void> | void {
  const pick = Math.random()
  if (pick < 0.2) return
  if (pick < 0.4) return Promise.resolve()
  if (pick < 0.7) return new Promise((resolve) => setImmediate(resolve))
  return sleep(Math.floor(Math.random() * 3))
}

function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { open, opened }
}

async function ownRedis() {
  const server = await startRedisServer()
  const client = new Redis(server.url)
  client.on('error', () => {})
  cleanups.push(async () => {
    client.disconnect()
    await server.stop()
  })
  const stack = new CacheStack([
    new MemoryLayer(),
    new RedisLayer({ client, prefix: 'own', commandTimeout: 300 }),
  ])
  return { server, client, stack }
}

describe('writeThrough: order of operations', () => {
  it('without reload: the key is gone before the write runs, stays uncached after, and the result is returned', async () => {
    const { stacks, view } = fleet(1)
    const cache = stacks[0]!
    const db = new FakeDb()
    await db.write('user:1', { name: 'old' })
    expect(await cache.getOrSet('user:1', () => db.read('user:1'))).toEqual({ name: 'old' })
    expect(await view.get('user:1')).toEqual({ name: 'old' })

    const seenDuringWrite: unknown[] = []
    let calls = 0
    const result = await writeThrough(cache, 'user:1', {
      write: async () => {
        calls++
        seenDuringWrite.push(await cache.get('user:1'), await view.get('user:1'))
        return db.write('user:1', { name: 'new' })
      },
    })
    expect(result).toEqual({ rowCount: 1, version: 2 })
    expect(calls).toBe(1)
    expect(seenDuringWrite).toEqual([undefined, undefined])
    expect(await cache.get('user:1')).toBeUndefined()
    expect(await view.get('user:1')).toBeUndefined()
    expect(await cache.getOrSet('user:1', () => db.read('user:1'))).toEqual({ name: 'new' })
  })

  it("with reload: the cache holds what the database holds after the write, not the write's result", async () => {
    const { stacks, view } = fleet(1)
    const cache = stacks[0]!
    const db = new FakeDb()
    await cache.set('user:2', { name: 'old' })
    const order: string[] = []
    const result = await writeThrough(cache, 'user:2', {
      write: async () => {
        order.push('write')
        await db.write('user:2', { name: 'new', normalisedBy: 'db trigger' })
        return 'ok'
      },
      reload: async () => {
        order.push('reload')
        return db.read('user:2')
      },
      reloadOptions: { tags: ['users'], ttl: 60_000 },
    })
    expect(result).toBe('ok')
    expect(order).toEqual(['write', 'reload'])
    expect(await cache.get('user:2')).toEqual({ name: 'new', normalisedBy: 'db trigger' })
    expect(await view.get('user:2')).toEqual({ name: 'new', normalisedBy: 'db trigger' })
    // reloadOptions reached the refill.
    expect(await cache.invalidateByTag('users')).toBeGreaterThan(0)
    expect(await view.get('user:2')).toBeUndefined()
  })

  it('a reload returning undefined caches nothing', async () => {
    const { stacks, view } = fleet(1)
    const cache = stacks[0]!
    await cache.set('gone', 1)
    await writeThrough(cache, 'gone', { write: () => 'deleted', reload: () => undefined })
    expect(await cache.get('gone')).toBeUndefined()
    expect(await view.get('gone')).toBeUndefined()
  })
})

describe('writeThrough: failures', () => {
  it('a failing database write: its error propagates, the old value was removed first, nothing is cached', async () => {
    const { stacks, view } = fleet(1)
    const cache = stacks[0]!
    await cache.set('acct', { balance: 10 })
    const failure = new Error('deadlock detected')
    let reloads = 0
    let seenDuringWrite: unknown = 'not run'
    await expect(
      writeThrough(cache, 'acct', {
        write: async () => {
          seenDuringWrite = await view.get('acct')
          throw failure
        },
        reload: () => {
          reloads++
          return { balance: 99 }
        },
      }),
    ).rejects.toBe(failure)
    expect(seenDuringWrite).toBeUndefined()
    expect(reloads).toBe(0)
    expect(await cache.get('acct')).toBeUndefined()
    expect(await view.get('acct')).toBeUndefined()
  })

  it.each([
    ['options without write', {}, InvalidOptionError],
    ['a write that is not a function', { write: 'UPDATE' }, InvalidOptionError],
    ['a reload that is not a function', { write: () => 1, reload: 'SELECT' }, InvalidOptionError],
    ['null options', null, InvalidOptionError],
  ] as const)('%s: a typed error, the cache untouched', async (_, options, type) => {
    const { stacks } = fleet(1)
    const cache = stacks[0]!
    await cache.set('k', 'kept')
    await expect(
      writeThrough(cache, 'k', options as unknown as WriteThroughOptions<unknown>),
    ).rejects.toBeInstanceOf(type)
    expect(await cache.get('k')).toBe('kept')
  })

  it('a bad key: InvalidKeyError and the database is not touched', async () => {
    const { stacks } = fleet(1)
    let calls = 0
    await expect(
      writeThrough(stacks[0]!, '', {
        write: () => {
          calls++
        },
      }),
    ).rejects.toBeInstanceOf(InvalidKeyError)
    expect(calls).toBe(0)
  })

  it('Redis down before the write: LayerUnavailableError and the database is not touched', async () => {
    const { server, stack } = await ownRedis()
    await stack.set('k', 'old')
    await server.kill()
    let calls = 0
    const outcome = await writeThrough(stack, 'k', {
      write: () => {
        calls++
        return 'committed'
      },
    }).catch((error: unknown) => error)
    expect(outcome).toBeInstanceOf(LayerUnavailableError)
    expect(outcome).not.toBeInstanceOf(CacheInvalidationAfterWriteError)
    expect(calls).toBe(0)
  })

  it.each(['killed', 'paused'] as const)(
    'Redis %s after the commit: CacheInvalidationAfterWriteError carrying the result, nothing cached',
    async (fault) => {
      const { server, stack } = await ownRedis()
      const db = new FakeDb()
      await db.write('k', 'old')
      await stack.set('k', 'old')
      let reloads = 0
      const outcome = await writeThrough(stack, 'k', {
        write: async () => {
          const result = await db.write('k', 'new')
          if (fault === 'killed') await server.kill()
          else server.pause()
          return result
        },
        reload: () => {
          reloads++
          return db.read('k')
        },
      }).catch((error: unknown) => error)
      server.resume()
      expect(outcome).toBeInstanceOf(CacheInvalidationAfterWriteError)
      const error = outcome as CacheInvalidationAfterWriteError<{ rowCount: number; version: number }>
      expect(error).toBeInstanceOf(LayerCacheError)
      expect(error.code).toBe('INVALIDATION_AFTER_WRITE')
      expect(error.key).toBe('k')
      expect(error.result).toEqual({ rowCount: 1, version: 2 })
      expect(error.cause).toBeInstanceOf(LayerUnavailableError)
      expect(db.value('k')).toBe('new')
      expect(reloads).toBe(0)
      // Removed before the write and not refilled: this instance serves nothing stale.
      expect(await stack.get('k', { onLayerError: 'bypass' })).not.toBe('old')
    },
  )

  it('a reload failing after the commit does not hide that the write committed', async () => {
    const { stacks, view } = fleet(1)
    const cache = stacks[0]!
    const db = new FakeDb()
    await cache.set('k', 'old')
    const outcome = await writeThrough(cache, 'k', {
      write: () => db.write('k', 'new'),
      reload: () => {
        throw new Error('replica lagging')
      },
    }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    )
    expect(db.value('k')).toBe('new')
    expect(await cache.get('k')).toBeUndefined()
    expect(await view.get('k')).toBeUndefined()
    // Either it resolves with the result, or its error carries it (like CacheInvalidationAfterWriteError):
    // a caller told only "replica lagging" would retry a write that is already committed.
    const result = 'result' in outcome ? outcome.result : (outcome.error as { result?: unknown }).result
    expect(result).toEqual({ rowCount: 1, version: 1 })
  })
})

describe('writeThrough: races with loads on another instance', () => {
  // B's load reads the old row, then is held; A writes through; B's load then tries to cache what it read.
  it.each([
    { start: 'before writeThrough', reload: false },
    { start: 'before writeThrough', reload: true },
    { start: 'between the first delete and the commit', reload: false },
    { start: 'between the first delete and the commit', reload: true },
  ])('a load started $start (reload: $reload) never leaves the old row cached', async ({ start, reload }) => {
    const { stacks, view } = fleet(2)
    const [a, b] = stacks as [CacheStack, CacheStack]
    const db = new FakeDb()
    await db.write('row', 'old')
    const readOld = gate()
    const release = gate()
    let loadOfB: Promise<unknown> | undefined
    const startLoad = async () => {
      loadOfB = b.getOrSet('row', async () => {
        const value = db.value('row')
        readOld.open()
        await release.opened
        return value
      })
      await readOld.opened
    }
    if (start === 'before writeThrough') await startLoad()
    await writeThrough(a, 'row', {
      write: async () => {
        if (start !== 'before writeThrough') await startLoad()
        return db.write('row', 'new')
      },
      ...(reload ? { reload: () => db.read('row') } : {}),
    })
    release.open()
    expect(await loadOfB).toBe('old') // its caller read before the write: fine to answer with it
    // Nothing stale anywhere. With reload the refill may survive ('new'), or be evicted by B's fenced
    // write-back (core removes a fenced key from every layer): a miss, never the old row.
    const allowed = reload ? ['new', undefined] : [undefined]
    expect(allowed).toContain(await view.get('row'))
    expect(allowed).toContain(await a.get('row'))
    expect(allowed).toContain(await b.get('row'))
    expect(await b.getOrSet('row', () => db.read('row'))).toBe('new')
  })

  it('a load that wrote back between the commit and the second delete is removed from the shared layer', async () => {
    const { stacks, view } = fleet(2)
    const [a, b] = stacks as [CacheStack, CacheStack]
    const db = new FakeDb()
    await db.write('row', 'old')
    await writeThrough(a, 'row', {
      write: async () => {
        const readBeforeCommit = db.value('row')
        const result = await db.write('row', 'new')
        await b.getOrSet('row', () => readBeforeCommit) // finishes (and writes back) before the 2nd delete
        expect(await view.get('row')).toBe('old')
        return result
      },
    })
    // B's own memory layer keeps 'old' until the cross-instance invalidation bus exists (README: not built
    // yet); the shared layer and the writing instance are clean.
    expect(await view.get('row')).toBeUndefined()
    expect(await a.get('row')).toBeUndefined()
  })
})

describe('writeThrough: concurrent writers of one key', () => {
  async function rounds(
    stacks: readonly CacheStack[],
    view: CacheStack,
    checked: readonly CacheStack[],
    count: number,
  ) {
    const db = new FakeDb()
    let filled = 0
    for (let round = 0; round < count; round++) {
      const key = `k${round}`
      await db.write(key, { round, writer: -1 })
      await stacks[0]!.getOrSet(key, () => db.read(key))
      const writers = 2 + Math.floor(Math.random() * 4)
      const work: Promise<unknown>[] = []
      for (let w = 0; w < writers; w++) {
        const stack = stacks[Math.floor(Math.random() * stacks.length)]!
        work.push(
          (async () => {
            await pause()
            return writeThrough(stack, key, {
              write: async () => {
                await pause()
                return db.write(key, { round, writer: w })
              },
              reload: () => db.read(key),
            })
          })(),
        )
      }
      // Readers racing the writers (getOrSet loads from the database through every stack).
      for (let r = 0; r < 3; r++) {
        const stack = stacks[Math.floor(Math.random() * stacks.length)]!
        work.push(
          (async () => {
            await pause()
            return stack.getOrSet(key, () => db.read(key))
          })(),
        )
      }
      await Promise.all(work)
      const final = db.value(key)
      const cached = [await view.get(key), ...(await Promise.all(checked.map((stack) => stack.get(key))))]
      for (const value of cached) {
        if (value !== undefined) expect(value, `round ${round}`).toEqual(final)
      }
      if (cached[0] !== undefined) filled++
      expect(await view.getOrSet(key, () => db.read(key))).toEqual(final)
    }
    expect(db.writes).toBeGreaterThan(count * 2)
    return filled
  }

  it('one instance, several writers with reload: the cache ends holding the final row or nothing (120 rounds)', async () => {
    const { stacks, view } = fleet(1)
    const filled = await rounds(stacks, view, stacks, 120)
    expect(filled).toBeGreaterThan(0) // the reload path did refill
  })

  it('three instances sharing Redis: the shared layer ends holding the final row or nothing (120 rounds)', async () => {
    // Without memory layers every instance reads the shared layer, so every one of them is checked.
    const { stacks, view } = fleet(3, { memory: false })
    const filled = await rounds(stacks, view, stacks, 120)
    expect(filled).toBeGreaterThan(0)
  })

  it('three instances with memory layers: the shared layer ends holding the final row or nothing', async () => {
    // Other instances' memory layers need the invalidation bus (not built yet), so only the shared layer.
    const { stacks, view } = fleet(3)
    const filled = await rounds(stacks, view, [], 120)
    expect(filled).toBeGreaterThan(0)
  })
})
