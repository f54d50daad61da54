import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { GC_SCRIPT } from '../src/index-scripts'

let redis: TestRedis
let raw: Redis
let n = 0

beforeAll(async () => {
  redis = await getTestRedis()
  raw = redis.createClient()
})
afterAll(() => redis.close())

interface Sent {
  readonly name: string
  /** How many times the caller waited for a reply before this command left: its round trip, from 1. */
  readonly trip: number
}

/**
 * A client whose commands are recorded with the round trip they left in: a command sent after some reply
 * arrived (since the previous command) starts a new round trip; commands sent together share one, whether
 * pipelined or not. The index's background collection is left out (it runs on a timer, not for the call).
 */
function recordedClient() {
  const client = redis.createClient()
  let sent: Sent[] = []
  let trip = 0
  let replied = true
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((command: { name: string; args: unknown[]; promise: Promise<unknown> }, ...rest) => {
    const result = send(command as never, ...(rest as []))
    if (command.name === 'eval' && command.args[0] === GC_SCRIPT) return result
    if (replied) {
      trip++
      replied = false
    }
    sent.push({ name: command.name, trip })
    command.promise.then(
      () => {
        replied = true
      },
      () => {
        replied = true
      },
    )
    return result
  }) as typeof client.sendCommand
  return {
    client,
    /** Runs `call` and returns the commands it sent (after anything sent before it was answered). */
    async record(call: () => Promise<unknown>): Promise<{ trips: number; names: string[] }> {
      sent = []
      trip = 0
      replied = true
      await call()
      return { trips: trip, names: sent.map((s) => s.name) }
    },
  }
}

async function setup() {
  const { client, record } = recordedClient()
  const prefix = `${redis.keyPrefix}${++n}:`
  const layer = new RedisLayer({ client, prefix })
  const cache = new CacheStack([new MemoryLayer({ ttl: 60_000 }), layer], { ttl: 60_000 })
  // The first write records the index layout and loads the scripts; later calls are the steady state.
  await cache.set('warm-up', 1, { tags: ['w'] })
  await cache.getOrSet('warm-up:load', async () => 1, { tags: ['w'] })
  return { cache, record, prefix }
}

describe('round trips to a standalone Redis (DESIGN budgets)', () => {
  it('set: one round trip, one script, with or without tags', async () => {
    const { cache, record } = await setup()
    for (const tags of [undefined, ['a'], ['a', 'b', 'c']]) {
      const { trips, names } = await record(() => cache.set(`k:${tags?.length ?? 0}`, { v: 1 }, { tags }))
      expect({ tags, trips, names }).toEqual({ tags, trips: 1, names: ['evalsha'] })
    }
  })

  it('mset: one round trip for the whole batch', async () => {
    const { cache, record } = await setup()
    const entries = Array.from({ length: 50 }, (_, i) => ({
      key: `m:${i}`,
      value: i,
      tags: i % 2 === 0 ? ['even'] : undefined,
    }))
    const { trips, names } = await record(() => cache.mset(entries))
    expect(trips).toBe(1)
    expect(names).toEqual(entries.map(() => 'evalsha'))
  })

  it('getOrSet miss: two round trips besides the loader (read with the fence snapshot, then the write)', async () => {
    const { cache, record, prefix } = await setup()
    for (const tags of [undefined, ['a']]) {
      const key = `load:${tags?.length ?? 0}`
      const { trips } = await record(() => cache.getOrSet(key, async () => ({ v: 2 }), { tags }))
      expect({ key, trips }).toEqual({ key, trips: 2 })
      expect(await raw.exists(`${prefix}${key}`)).toBe(1)
    }
  })

  it('an overwrite that drops a tag takes one more round trip, and the dropped tag no longer reaches the key', async () => {
    const { cache, record, prefix } = await setup()
    // Its script's first use on this server costs a NOSCRIPT answer and an EVAL: done once here.
    await cache.set('e', 1, { tags: ['x', 'y'] })
    await cache.set('e', 1)
    await cache.set('d', 1, { tags: ['x', 'y'] })
    const { trips } = await record(() => cache.set('d', 2, { tags: ['x'] }))
    expect(trips).toBe(2)
    expect(await raw.zscore(`${prefix}~t:y`, `${prefix}d`)).toBeNull()
    expect(await cache.invalidateByTag('y')).toBe(0)
    expect(await raw.exists(`${prefix}d`)).toBe(1)
    expect(await cache.invalidateByTag('x')).toBe(1) // d only: e no longer carries it
    expect(await raw.exists(`${prefix}d`)).toBe(0)
  })
})
