import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { FORGET_SCRIPT, GC_SCRIPT } from '../src/index-scripts'
import { keyFenceOf } from '../src/key-fence'
import { RedisKeyIndex } from '../src/redis-key-index'
import { RedisTagStore } from '../src/redis-tag-store'

// The removal path on one Redis (docs/internals/invalidation-design.md, "Removal on one Redis"): each
// chunk of keys leaves with its index entries, memberships and fence counter in one script, so a delete
// is one round trip and a tag invalidation two, whatever the number of keys.

let redis: TestRedis
let client: Redis
let raw: Redis
let n = 0
const prefix = () => `${redis.keyPrefix}rm${++n}:`

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  raw = redis.createClient()
})
afterAll(() => redis.close())

interface Sent {
  readonly name: string
  /** Replies the client had received from Redis when this command left: 0 for all = one round trip. */
  readonly repliesBefore: number
}

/**
 * Round trips on `client` until stop(): pipelines executed plus commands sent outside a pipeline
 * (wrapping `pipeline()` and `sendCommand`), and per command how many replies had arrived before it left.
 * The key index's own background work on the same client (a collection tick every second, a re-read of
 * the layout every 10 s) is not the measured operation's: left out.
 */
function countTrips(target: Redis) {
  const sent: Sent[] = []
  let pipelines = 0
  let replies = 0
  const originalPipeline = target.pipeline
  const originalSend = target.sendCommand
  target.pipeline = function (this: Redis, ...args: Parameters<Redis['pipeline']>) {
    const pipe = originalPipeline.apply(this, args)
    const exec = pipe.exec
    pipe.exec = function (this: typeof pipe, ...execArgs: Parameters<typeof exec>) {
      const queued = (pipe as unknown as { _queue: { args: unknown[] }[] })._queue
      const background =
        queued.every((command) => command.args[0] === GC_SCRIPT) ||
        queued.some((command) => command.args.some((arg) => String(arg).endsWith('}layout')))
      if (!background) pipelines++
      return exec.apply(this, execArgs)
    }
    return pipe
  }
  target.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
    const [command, stream] = args
    if (stream === undefined) {
      sent.push({ name: command.name, repliesBefore: replies })
      command.promise.then(
        () => replies++,
        () => replies++,
      )
    }
    return originalSend.apply(this, args)
  }
  return {
    sent,
    trips: () => pipelines + sent.length,
    stop: () => {
      Reflect.deleteProperty(target, 'pipeline')
      Reflect.deleteProperty(target, 'sendCommand')
    },
  }
}

async function counted<T>(work: () => Promise<T>): Promise<{ result: T; trips: number; sent: Sent[] }> {
  const counter = countTrips(client)
  try {
    const result = await work()
    return { result, trips: counter.trips(), sent: counter.sent }
  } finally {
    counter.stop()
  }
}

function setup() {
  const layer = new RedisLayer({ client, prefix: prefix() })
  const index = new RedisKeyIndex(layer)
  const tags = new RedisTagStore(layer)
  const full = (key: string) => layer.prefix + key
  const members = (tag: string) => raw.zrange(tags.tagSetKey(tag), 0, -1)
  /** Every trace of `key` in the index: k, kx, kt of its shard. */
  const traces = async (key: string) => {
    const shard = await index.shardOf(full(key))
    return [
      await raw.zscore(shard.keysKey, full(key)),
      await raw.zscore(shard.expiryKey, full(key)),
      await raw.hget(shard.tagsKey, full(key)),
    ].filter((trace) => trace !== null)
  }
  const pendingKeys = async () => {
    let total = 0
    for (const shard of await index.shards()) total += await raw.zcard(shard.pendingKey)
    return total
  }
  return { layer, index, full, members, traces, pendingKeys }
}

describe('removal on a standalone Redis', () => {
  it('a delete is one round trip: one script removes the value, its index entries and moves its fence counter', async () => {
    const { layer, full, traces } = setup()
    const cache = new CacheStack([layer])
    await cache.mset([
      { key: 'a', value: 1 },
      { key: 'b', value: 2 },
    ])
    await layer.delete('warm-up') // the script is loaded on the server now
    const counter = keyFenceOf(layer.prefix, full('a'), false)
    const before = Number(await raw.get(counter)) // a set moves it too
    const { trips, sent } = await counted(() => layer.delete('a'))
    expect(trips).toBe(1)
    expect(sent.map((s) => s.name)).toEqual(['evalsha'])
    expect(await raw.exists(full('a'))).toBe(0)
    expect(await traces('a')).toEqual([])
    expect(Number(await raw.get(counter))).toBe(before + 1)
    expect(await raw.pttl(counter)).toBeGreaterThan(0)
    // A key that is not there costs the same and still moves its counter (a load in flight is refused).
    expect((await counted(() => layer.delete('never'))).trips).toBe(1)
    expect(await raw.get(keyFenceOf(layer.prefix, full('never'), false))).toBe('1')
    expect(await raw.exists(full('b'))).toBe(1)
  })

  it("a stack's delete without dependents is one round trip: the script and the dependency check leave together", async () => {
    const { layer } = setup()
    const cache = new CacheStack([new MemoryLayer(), layer])
    await cache.set('a', 1)
    await cache.delete('warm-up')
    const { sent } = await counted(() => cache.delete('a'))
    expect(sent.map((s) => s.name).sort()).toEqual(['evalsha', 'exists'])
    // Both left before any reply came back.
    expect(sent.every((s) => s.repliesBefore === 0)).toBe(true)
    expect(await cache.get('a')).toBeUndefined()
  })

  it('a tagged key takes one more round trip: its tags are read in the first, its sets declared in the second', async () => {
    const { layer, full, members, traces } = setup()
    const cache = new CacheStack([layer])
    await cache.set('t', 1, { tags: ['x', 'y'] })
    await cache.set('other', 2, { tags: ['x'] })
    await layer.delete('warm-up')
    const { trips } = await counted(() => layer.delete('t'))
    expect(trips).toBe(2)
    expect(await raw.exists(full('t'))).toBe(0)
    expect(await traces('t')).toEqual([])
    expect(await members('x')).toEqual([full('other')])
    expect(await members('y')).toEqual([])
  })

  it('a tag invalidation of 2 000 keys is two round trips, one script per 500 keys, nothing left behind', async () => {
    const { layer, full, members, traces, pendingKeys } = setup()
    const cache = new CacheStack([layer])
    const keys = Array.from({ length: 2000 }, (_, i) => `item:${i}`)
    await cache.mset(keys.map((key) => ({ key, value: 1, tags: ['all'] })))
    await cache.invalidateByTag('none') // loads the scripts
    const counter = countTrips(client)
    const commands: string[] = []
    const send = client.sendCommand
    client.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
      if (args[0].args[0] !== GC_SCRIPT) commands.push(args[0].name)
      return send.apply(this, args)
    }
    let removed: number
    try {
      removed = await cache.invalidateByTag('all')
    } finally {
      client.sendCommand = send
      counter.stop()
    }
    expect(removed).toBe(2000)
    // Epochs, members and pending removals in one pipeline; the removal in another; the dependency mark.
    expect(counter.trips()).toBe(3)
    const scripts = commands.filter((name) => name === 'evalsha' || name === 'eval').length
    // The pending removals of all 16 shards in one script, and 2 000 keys in chunks of 500.
    expect(scripts).toBe(1 + 2000 / 500)
    expect(await raw.exists(...keys.slice(0, 100).map(full))).toBe(0)
    expect(await members('all')).toEqual([])
    expect(await traces('item:7')).toEqual([])
    expect(await pendingKeys()).toBe(0)
  })

  it('keys carrying other tags leave those sets too, in one more round trip', async () => {
    const { layer, full, members, traces } = setup()
    const cache = new CacheStack([layer])
    await cache.mset(
      Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t', `own:${i}`, 'shared'] })),
    )
    await cache.set('spared', 1, { tags: ['shared'] })
    await cache.invalidateByTag('none')
    const { result, trips } = await counted(() => cache.invalidateByTag('t'))
    expect(result).toBe(30)
    expect(trips).toBe(4)
    expect(await members('shared')).toEqual([full('spared')])
    expect(await members('own:3')).toEqual([])
    expect(await traces('k3')).toEqual([])
    expect(await traces('spared')).toHaveLength(3)
  })

  it('counts only members whose value was still there, and removes the traces of the others', async () => {
    const { layer, full, members, traces } = setup()
    const cache = new CacheStack([layer])
    await cache.mset(Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t'] })))
    // Values gone behind the index's back (expired, evicted): their entries are still there.
    await raw.unlink(full('k2'), full('k5'))
    expect(await cache.invalidateByTag('t')).toBe(8)
    expect(await members('t')).toEqual([])
    expect(await traces('k2')).toEqual([])
    // All of a chunk gone, none gone: the same.
    await cache.mset(Array.from({ length: 4 }, (_, i) => ({ key: `g${i}`, value: i, tags: ['u'] })))
    await raw.unlink(...Array.from({ length: 4 }, (_, i) => full(`g${i}`)))
    expect(await cache.invalidateByTag('u')).toBe(0)
    expect(await members('u')).toEqual([])
  })

  it('prefix invalidations and deleteMany remove everything in one script per chunk, without pending keys', async () => {
    const { layer, full, traces, pendingKeys, members } = setup()
    const cache = new CacheStack([layer])
    await cache.mset(Array.from({ length: 600 }, (_, i) => ({ key: `user:${i}`, value: i, tags: ['u'] })))
    await cache.mdelete(['user:1', 'user:2', 'missing'])
    expect(await raw.exists(full('user:1'), full('user:2'))).toBe(0)
    expect(await traces('user:1')).toEqual([])
    expect(await cache.invalidateByPrefix('user:')).toBe(598)
    expect(await raw.exists(full('user:3'))).toBe(0)
    expect(await traces('user:599')).toEqual([])
    expect(await members('u')).toEqual([])
    expect(await pendingKeys()).toBe(0)
  })

  it('finds keys a removal in steps (an earlier version, a Cluster-style fallback) has pending', async () => {
    const { layer, index, full, members, traces } = setup()
    const cache = new CacheStack([layer])
    await cache.set('k', 1, { tags: ['t', 'u'] })
    await cache.set('other', 2, { tags: ['t'] })
    // Another remover took k out of the index and its sets (steps 1 and 2) and has not unlinked it yet.
    const shard = await index.shardOf(full('k'))
    await raw.eval(
      FORGET_SCRIPT,
      4,
      shard.keysKey,
      shard.expiryKey,
      shard.tagsKey,
      shard.pendingKey,
      1,
      full('k'),
    )
    await raw.zrem(new RedisTagStore(layer).tagSetKey('t'), full('k'))
    await raw.zrem(new RedisTagStore(layer).tagSetKey('u'), full('k'))
    expect(await members('t')).toEqual([full('other')])
    expect(await cache.invalidateByTag('t')).toBe(2)
    expect(await raw.exists(full('k'))).toBe(0)
    expect(await traces('k')).toEqual([])
  })

  it('a layer without a key index removes values and the memberships it read', async () => {
    const p = prefix()
    const layer = new RedisLayer({ client, prefix: p, keyIndex: false })
    const tags = new RedisTagStore(layer)
    const cache = new CacheStack([layer])
    await cache.mset(Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t'] })))
    const before = Number(await raw.get(keyFenceOf(p, `${p}k0`, false)))
    await cache.delete('k0')
    expect(await raw.exists(`${p}k0`)).toBe(0)
    expect(await cache.invalidateByTag('t')).toBe(4)
    expect(await raw.zcard(tags.tagSetKey('t'))).toBe(0)
    expect(Number(await raw.get(keyFenceOf(p, `${p}k0`, false)))).toBe(before + 1)
  })
})
