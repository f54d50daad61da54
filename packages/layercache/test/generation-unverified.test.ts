/**
 * An instance that missed a generation move must not take an operation as done in the generation it has.
 *
 * Found by the history checker (standalone-faults, SEED=16001 and 565091): a bumpGeneration() timed out
 * during a Redis pause but Redis ran it afterwards, so no instance was told (no bus message) and the bumper
 * stayed on the old generation too. Two gaps then let the old generation's key names be used as if current:
 *   - the read of the shared generation that runs beside every remote operation failed (timed out, or was
 *     refused by a half-open circuit whose one probe was the operation itself) while the operation
 *     succeeded, and a failed read was taken as "the generation did not move";
 *   - the bus messages of later invalidations name the new generation's keys, which never match what the
 *     lagging instance holds in memory under the old generation's names.
 */
import { eventually } from '@layercache/test-utils'
import { injectLatency, Prng } from '@layercache/test-utils/history'
import { expect, it } from 'vitest'
import {
  CacheStack,
  generationKeyOf,
  LayerCacheError,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
} from '../src'
import { useStandaloneRedis } from './support/standalone-redis'

const { client, redis } = useStandaloneRedis()

/**
 * The held command times out after this (the test waits for the rejection, never with a sleep of its
 * own); long enough that no other command does on a loaded machine.
 */
const COMMAND_TIMEOUT = 1000

function fleet(name: string) {
  const prefix = `${redis().keyPrefix}${name}`
  const channel = `${prefix}:bus`
  const buses: RedisInvalidationBus[] = []
  const stacks: CacheStack[] = []
  const instance = () => {
    const data = client()
    const bus = new RedisInvalidationBus({ publisher: data, subscriber: client(), channel })
    const stack = new CacheStack(
      [
        new MemoryLayer({ ttl: 60_000 }),
        new RedisLayer({ client: data, prefix, commandTimeout: COMMAND_TIMEOUT }),
      ],
      { generation: 1, invalidationBus: bus },
    )
    buses.push(bus)
    stacks.push(stack)
    const latency = injectLatency(data, { maxMs: 0, random: new Prng(1) })
    const generationKey = generationKeyOf((stack.layers[1] as RedisLayer).prefix)
    /** Holds back this instance's next read of the shared generation (and nothing else). */
    const holdGenerationRead = () => latency.holdNext(['get'], (args) => String(args[0]) === generationKey)
    return { stack, bus, latency, generationKey, holdGenerationRead }
  }
  /** Redis as a new instance finds it: the shared generation, read afresh, and the value under it. */
  const stored = async (key: string) => {
    const reader = new CacheStack([new RedisLayer({ client: client(), prefix })], { generation: 1 })
    return { value: await reader.get(key), generation: reader.generation }
  }
  const close = async () => {
    for (const stack of stacks) stack.close()
    await Promise.all(buses.map((bus) => bus.close()))
  }
  return { instance, stored, close }
}

/** `promise`, or a rejection saying what did not happen within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

type Instance = ReturnType<ReturnType<typeof fleet>['instance']>

/**
 * `bumper` bumps the generation, but the reply is lost: its script is held back until the call timed out
 * (so the bump rejects, nothing is announced and `bumper` stays where it was), then sent, and Redis runs it.
 */
async function bumpWithLostReply(bumper: Instance): Promise<void> {
  const observer = client()
  const held = bumper.latency.holdNext(['eval', 'evalsha'])
  const bumping = bumper.stack.bumpGeneration()
  await held.reached
  await expect(bumping).rejects.toBeInstanceOf(LayerCacheError)
  expect(bumper.stack.generation).toBe(1)
  held.release()
  await eventually(async () => (await observer.get(bumper.generationKey)) === '2', 'Redis ran the held bump')
}

it('a delete whose check of the shared generation failed is not done in the generation the fleet left', async () => {
  const { instance, stored, close } = fleet('genunverified:delete')
  try {
    const bumper = instance()
    const lagging = instance()
    await Promise.all([bumper.bus.ready, lagging.bus.ready])
    await lagging.stack.get('warm') // it has read the shared generation: 1
    expect(lagging.stack.generation).toBe(1)
    await bumpWithLostReply(bumper)
    // The row is cached in generation 2 (the bumper's write finds the generation moved and is redone there).
    await bumper.stack.set('k', 'old')
    expect(await stored('k')).toEqual({ value: 'old', generation: 2 })
    // The database changes; the lagging instance deletes the key, and the read of the shared generation
    // beside its delete does not answer in time (a pause, a slow reply) while the delete itself does.
    const held = lagging.holdGenerationRead()
    const deleting = lagging.stack.delete('k')
    await held.reached
    // The generation is read again once the delete is done, found moved, and the delete redone in
    // generation 2: it never resolves with the old value still where every instance reads.
    await deleting
    held.release()
    expect(await stored('k')).toEqual({ value: undefined, generation: 2 })
    expect(lagging.stack.generation).toBe(2)
  } finally {
    await close()
  }
})

it('a read whose check of the shared generation failed never answers from the generation the fleet left', async () => {
  const { instance, close } = fleet('genunverified:read')
  try {
    const bumper = instance()
    const lagging = instance()
    await Promise.all([bumper.bus.ready, lagging.bus.ready])
    await lagging.stack.get('warm')
    await bumper.stack.set('k', 'old') // generation 1
    await bumpWithLostReply(bumper)
    // The bump resolved nowhere, but it happened: every key of generation 1 is invalidated. The lagging
    // instance reads k; the generation read beside it does not answer in time, the value read does.
    const held = lagging.holdGenerationRead()
    const reading = lagging.stack.get('k')
    await held.reached
    const answer = await reading
    held.release()
    expect(answer).toBeUndefined()
    expect(await lagging.stack.get('k')).toBeUndefined() // nor copied into memory
    expect(lagging.stack.generation).toBe(2)
  } finally {
    await close()
  }
})

it('an instance that missed a generation move drops its memory when a message names the new generation', async () => {
  const { instance, close } = fleet('genunverified:bus')
  try {
    const bumper = instance()
    const lagging = instance()
    await Promise.all([bumper.bus.ready, lagging.bus.ready])
    // A first message from a sender flushes the receiver's memory (it cannot tell what it missed before):
    // get that out of the way.
    const heardOnce = new Promise<void>((resolve) => lagging.stack.on('peerInvalidation', () => resolve()))
    await bumper.stack.delete('warm')
    await heardOnce
    await lagging.stack.set('k', 'old') // in its memory (and Redis) under generation 1
    expect(await lagging.stack.get('k')).toBe('old')
    await bumpWithLostReply(bumper)
    await bumper.stack.get('other') // the bumper's next trip to Redis moves it to generation 2
    expect(bumper.stack.generation).toBe(2)
    // The database changes and the bumper deletes the key, in generation 2, and says so on the bus.
    const heard = new Promise<void>((resolve) => lagging.stack.on('peerInvalidation', () => resolve()))
    const moved = new Promise<number>((resolve) =>
      lagging.stack.on('generation', ({ generation }) => resolve(generation)),
    )
    await bumper.stack.delete('k')
    await heard
    // The message named g2:k; the lagging instance holds g1:k. It must not answer the old value, and it
    // reads the shared generation again.
    expect(await lagging.stack.get('k')).toBeUndefined()
    expect(await within(moved, 5000, 'the lagging instance moved to generation 2')).toBe(2)
  } finally {
    await close()
  }
})
