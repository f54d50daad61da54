import { expect, it } from 'vitest'
import { type CacheEventMap, CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from '../src'
import { useStandaloneRedis } from './support/standalone-redis'

const { client, redis } = useStandaloneRedis()
const HOUR = 3_600_000

async function instance(prefix: string) {
  const data = client()
  const bus = new RedisInvalidationBus({ publisher: data, subscriber: client(), channel: `${prefix}:bus` })
  const stack = new CacheStack([new MemoryLayer({ ttl: HOUR }), new RedisLayer({ client: data, prefix })], {
    invalidationBus: bus,
  })
  await bus.ready
  return stack
}

/** The next peer invalidation `stack` applies. */
function nextPeerInvalidation(stack: CacheStack): Promise<CacheEventMap['peerInvalidation']> {
  return new Promise((resolve) => {
    const off = stack.on('peerInvalidation', (event) => {
      off()
      resolve(event)
    })
  })
}

it('an expiry on one instance reaches the others’ memory: they read the stale copy from Redis', async () => {
  const prefix = `${redis().keyPrefix}softbus`
  const a = await instance(prefix)
  const b = await instance(prefix)
  try {
    // Each has heard the other once (a first message from a sender flushes memory).
    const heard = nextPeerInvalidation(b)
    await a.delete('warmup')
    await heard
    for (const [key, expire] of [
      ['k:1', () => a.expire('k:1')],
      ['k:2', () => a.expireByTag('group')],
      ['k:3', () => a.expireByPrefix('k:3')],
    ] as const) {
      await a.set(key, 'v1', { ttl: HOUR, tags: ['group'] })
      expect(await b.get(key)).toBe('v1') // now in b's memory too
      const applied = nextPeerInvalidation(b)
      await expire()
      await applied
      expect(await b.get(key)).toBeUndefined()
      const failing = () => Promise.reject(new Error('db down'))
      expect(await b.getOrSet(key, failing, { staleIfError: HOUR })).toBe('v1')
    }
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})
