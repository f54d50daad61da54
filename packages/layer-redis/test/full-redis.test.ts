import { CacheStack } from '@layercache/core'
import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { shardIndexOf, shardOf } from '../src/index-layout'

// A Redis at maxmemory with noeviction (what the docs recommend for a queue's Redis) refuses every
// command that needs memory (INCR, ZADD, SET) and still runs those that free it (UNLINK, ZREM), and a
// script that has written may go on. A removal must never stop half-way with the value still there and
// its index entries gone: no later invalidation would find it (issue 15, item 1's audit).

let server: RedisServerHandle
let raw: Redis
let n = 0
const prefix = () => `full${++n}:`

beforeAll(async () => {
  server = await startRedisServer({ args: ['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction'] })
  raw = new Redis(server.url)
})
afterAll(async () => {
  raw?.disconnect()
  await server?.stop()
})

/** Past maxmemory in one command (SETRANGE allocates the whole string). */
const fill = () => raw.setrange('filler', 16 * 1024 * 1024, 'x')
const empty = () => raw.del('filler')

async function indexed(p: string, key: string): Promise<boolean> {
  const shard = shardOf(p, shardIndexOf(p + key, 16))
  return (await raw.zscore(shard.keysKey, p + key)) !== null
}

describe('a full Redis (maxmemory, noeviction)', () => {
  it('a delete removes the value and its index entries and moves its fence counter, in one script', async () => {
    const p = prefix()
    const client = new Redis(server.url)
    const cache = new CacheStack([new RedisLayer({ client, prefix: p })])
    await cache.mset(Array.from({ length: 5 }, (_, i) => ({ key: `user:${i}`, value: i, tags: ['users'] })))
    const before = Number(await raw.get(`${p}~d:user:1`)) // a set moves it too
    await fill()
    try {
      // The script frees memory first (UNLINK, ZREM): Redis refuses a write only before a script's first
      // one, so the counter's INCR goes through and a load in flight cannot write the old value back.
      await cache.delete('user:1')
      expect(await raw.exists(`${p}user:1`)).toBe(0)
      expect(await indexed(p, 'user:1')).toBe(false)
      expect(Number(await raw.get(`${p}~d:user:1`))).toBe(before + 1)
      // A key that was not there: nothing to free, the counter still moves.
      await cache.delete('user:none')
      expect(await raw.get(`${p}~d:user:none`)).toBe('1')
    } finally {
      await empty()
    }
    // Nothing was left untracked: the prefix invalidation finds the other four.
    expect(await cache.invalidateByPrefix('user:')).toBe(4)
    expect(await raw.keys(`${p}user:*`)).toEqual([])
    expect(await raw.zcard(`${p}~t:users`)).toBe(0)
    client.disconnect()
  })

  it('an instance that starts while Redis is full reads the recorded index layout and can delete', async () => {
    const p = prefix()
    const writerClient = new Redis(server.url)
    await new CacheStack([new RedisLayer({ client: writerClient, prefix: p })]).set('k', 1)
    const before = Number(await raw.get(`${p}~d:k`))
    await fill()
    const client = new Redis(server.url)
    try {
      const late = new CacheStack([new RedisLayer({ client, prefix: p })])
      // The layout was recorded by the first instance: reading it writes nothing.
      await late.delete('k')
      expect(await raw.exists(`${p}k`)).toBe(0)
      expect(Number(await raw.get(`${p}~d:k`))).toBe(before + 1)
    } finally {
      await empty()
      writerClient.disconnect()
      client.disconnect()
    }
  })
})
