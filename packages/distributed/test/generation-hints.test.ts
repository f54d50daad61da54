// A bus message naming a generation is a hint to read the shared generation again, never a number to adopt:
// anyone able to publish on an unsigned channel could otherwise move the fleet to 2^53 - 1, where
// bumpGeneration() can never move again.
import { generationKeyOf, type RedisLayer } from '@layercache/layer-redis'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import type { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { WIRE_VERSION } from '../src/bus-wire'
import { acquainted, eventually, type Instance, inMemory, startInstance } from './support/instances'

const redis = useRedisAndCluster()
const TARGETS = ['standalone', 'cluster'] as const

let open: Instance[] = []
afterEach(async () => {
  await Promise.all(open.map((instance) => instance.close()))
  open = []
})

describe.each(TARGETS)('generation messages on %s', (target) => {
  it('an unsigned message naming a generation drops memory at most; the number comes from Redis alone', async () => {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'genhint')
    const [a, b] = await Promise.all(
      [0, 1].map(() => startInstance(client, prefix, { stack: { generation: 1 } })),
    )
    open.push(a!, b!)
    await acquainted([a!.bus, b!.bus]) // b's flush on first hearing a is behind it
    const key = generationKeyOf((b!.stack.layers[1] as RedisLayer).prefix)
    await a!.stack.set('k', 'v')
    expect(await b!.stack.get('k')).toBe('v')
    expect(inMemory(b!, 'g1:k')).toBeDefined()
    const heard = b!.stack.getStats().peerInvalidations
    // No secret on this bus: anyone who can publish on the channel can send this.
    const body = JSON.stringify({ s: 'mallory', q: 1, t: 0, n: 'x', o: [{ n: Number.MAX_SAFE_INTEGER }] })
    const channel = `${prefix}bus`
    const raw = client as Redis
    await (target === 'cluster'
      ? raw.spublish(channel, `${WIRE_VERSION}..${body}`)
      : raw.publish(channel, `${WIRE_VERSION}..${body}`))
    await eventually(() => b!.stack.getStats().peerInvalidations > heard, 'b hears it')
    expect(inMemory(b!, 'g1:k')).toBeUndefined() // what an unsigned message may do: drop memory
    expect(await b!.stack.get('k')).toBe('v') // still generation 1: read again from Redis
    expect(b!.stack.generation).toBe(1)
    expect(await client.get(key)).toBe('1')
    expect(await a!.stack.bumpGeneration()).toBe(2)
    // A real bump still reaches the other instance at once (its message makes it read Redis again).
    await eventually(() => b!.stack.generation === 2, 'b follows the real bump')
    expect(await b!.stack.get('k')).toBeUndefined()
  })
})
