import { expect, it } from 'vitest'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from '../src'
import { useStandaloneRedis } from './support/standalone-redis'

const { client, redis } = useStandaloneRedis()

/** `promise`, or a rejection saying what did not happen within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

it('an instance that may have missed a message reads the shared generation again at once', async () => {
  // Found by the history checker: a generation move announced in a message this instance could not place
  // left it on the old generation until its next remote call.
  const prefix = `${redis().keyPrefix}genloss`
  const silent = new CacheStack([new RedisLayer({ client: client(), prefix })], { generation: 1 })
  const subscriber = client()
  const bus = new RedisInvalidationBus({ publisher: client(), subscriber, channel: `${prefix}:bus` })
  const listening = new CacheStack(
    [new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client: client(), prefix })],
    {
      generation: 1,
      invalidationBus: bus,
    },
  )
  try {
    await bus.ready
    await listening.get('warm') // it has read the shared generation: 1
    expect(listening.generation).toBe(1)
    const moved = new Promise<number>((resolve) =>
      listening.on('generation', ({ generation }) => resolve(generation)),
    )
    expect(await silent.bumpGeneration()).toBe(2) // announced on no bus: as good as a lost message
    const flushed = new Promise<void>((resolve) => listening.on('unverified', () => resolve()))
    subscriber.disconnect(true) // the subscription drops and comes back: messages may have been missed
    await within(flushed, 5000, 'the listening instance flushed its memory')
    expect(await within(moved, 5000, 'the listening instance moved to the new generation')).toBe(2)
  } finally {
    listening.close()
    await bus.close()
  }
})
