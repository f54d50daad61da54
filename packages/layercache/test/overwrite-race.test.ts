import { injectLatency, Prng } from '@layercache/test-utils/history'
import { expect, it } from 'vitest'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from '../src'
import { useStandaloneRedis } from './support/standalone-redis'

const { client, redis } = useStandaloneRedis()

async function instance(prefix: string, channel: string, broadcast: boolean) {
  const data = client()
  const bus = new RedisInvalidationBus({ publisher: data, subscriber: client(), channel })
  // Without the key index a set is one plain SET (not a pipeline), which the test can hold back.
  const layer = new RedisLayer({ client: data, prefix, keyIndex: false })
  const stack = new CacheStack([new MemoryLayer({ ttl: 60_000 }), layer], {
    invalidationBus: bus,
    broadcastL1Invalidation: broadcast,
  })
  await bus.ready
  return { stack, data, bus }
}

it("a set's own instance never answers an older value once the set resolved (a read raced its SET)", async () => {
  // Found by the history checker (Cluster SEED=1033): the memory copy the set wrote first was dropped by
  // another instance's broadcast, a read here fetched that instance's (older) value from Redis before
  // this set's SET landed, and copied it into memory, where it outlived the set.
  const prefix = `${redis().keyPrefix}overwrite`
  const channel = `${prefix}:bus`
  const a = await instance(prefix, channel, false)
  const b = await instance(prefix, channel, true)
  try {
    // Each bus has heard the other (a first message from a sender flushes).
    const heardOnce = new Promise<void>((resolve) => a.stack.on('peerInvalidation', () => resolve()))
    await a.stack.set('warm', 1)
    await b.stack.set('warm', 2)
    await heardOnce
    const latency = injectLatency(a.data, { maxMs: 0, random: new Prng(1) })
    const peerMessage = () => new Promise<void>((resolve) => a.stack.on('peerInvalidation', () => resolve()))
    const held = latency.holdNext(['set', 'evalsha', 'eval'])
    const setting = a.stack.set('k', 'v8') // its SET waits
    await held.reached
    const heard = peerMessage()
    await b.stack.set('k', 'v7') // another instance's write lands first, and says so on the bus
    await heard
    await a.stack.get('k') // a read here while the SET is still on its way
    held.release()
    await setting
    expect(await a.stack.get('k')).toBe('v8')
    latency.remove()
  } finally {
    a.stack.close()
    b.stack.close()
    await Promise.all([a.bus.close(), b.bus.close()])
  }
})
