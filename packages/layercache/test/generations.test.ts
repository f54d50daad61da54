import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import {
  type CacheEventMap,
  CacheStack,
  type CacheStackOptions,
  CorruptEntryError,
  generationKeyOf,
  InvalidOperationError,
  InvalidOptionError,
  LayerCacheError,
  MemoryLayer,
  RedisLayer,
} from '../src'

const redis = useRedisAndCluster()

describe('generations without Redis', () => {
  it('a bump makes every key miss at once and new writes live in the new generation', async () => {
    const cache = new CacheStack([new MemoryLayer()], { generation: 1 })
    await cache.set('user:1', 'a')
    await cache.namespace('t').set('user:1', 'b')
    expect(cache.generation).toBe(1)
    expect(await cache.bumpGeneration()).toBe(2)
    expect(await cache.get('user:1')).toBeUndefined()
    expect(await cache.namespace('t').get('user:1')).toBeUndefined()
    await cache.set('user:1', 'c')
    expect(await cache.get('user:1')).toBe('c')
    expect((cache.layers[0] as MemoryLayer).size).toBe(1)
  })

  it('emits a generation event and fences loads in flight', async () => {
    const cache = new CacheStack([new MemoryLayer()], { generation: 5 })
    const moves: unknown[] = []
    cache.on('generation', (event) => moves.push(event))
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const loading = cache.getOrSet('k', async () => {
      await gate
      return 'old'
    })
    await cache.bumpGeneration()
    release()
    expect(await loading).toBe('old')
    expect(await cache.get('k')).toBeUndefined()
    expect(moves).toEqual([{ generation: 6, previous: 5 }])
  })

  it('refuses bad options and a bump without generations', async () => {
    const layers = () => [new MemoryLayer()]
    for (const generation of [-1, 1.5, '1', Number.NaN]) {
      expect(() => new CacheStack(layers(), { generation } as unknown as CacheStackOptions)).toThrow(
        InvalidOptionError,
      )
    }
    expect(() => new CacheStack(layers(), { generationCleanup: { batchSize: 10 } })).toThrow(
      InvalidOptionError,
    )
    expect(() => new CacheStack(layers(), { generation: 1, generationCleanup: { batchSize: 0 } })).toThrow(
      InvalidOptionError,
    )
    expect(
      () =>
        new CacheStack(layers(), {
          generation: 1,
          generationCleanup: { size: 10 },
        } as unknown as CacheStackOptions),
    ).toThrow(InvalidOptionError)
    const plain = new CacheStack(layers())
    await plain.set('k', 1)
    await expect(plain.bumpGeneration()).rejects.toBeInstanceOf(LayerCacheError)
    expect(await plain.get('k')).toBe(1)
    expect(plain.generation).toBeUndefined()
  })
})

describe.each(['standalone', 'cluster'] as const)('generations shared through %s Redis', (target) => {
  function fleet(options: CacheStackOptions = { generation: 1 }) {
    const client = redis.client(target)
    const prefix = redis.prefix(target, 'gen')
    const instance = (own: CacheStackOptions = options) =>
      new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix })], own)
    const redisOnly = (own: CacheStackOptions = options) =>
      new CacheStack([new RedisLayer({ client, prefix })], own)
    return { client, prefix, instance, redisOnly }
  }

  it('a bump on one instance is seen by the next remote read of every other', async () => {
    const { instance } = fleet()
    const a = instance()
    const b = instance()
    await a.set('price:1', 10)
    expect(await b.get('price:1')).toBe(10)
    expect(await a.bumpGeneration()).toBe(2)
    // b's next trip to Redis reads the generation alongside, moves, and drops its memory layer.
    expect(await b.get('something-else')).toBeUndefined()
    expect(b.generation).toBe(2)
    expect(await b.get('price:1')).toBeUndefined()
    await a.set('price:1', 12)
    expect(await b.get('price:1')).toBe(12)
  })

  it('a read that raced the bump answers a miss, never the old value', async () => {
    const { instance, redisOnly } = fleet()
    const a = instance()
    await a.set('k', 'old')
    const b = redisOnly()
    expect(await b.get('k')).toBe('old')
    await a.bumpGeneration()
    // b still believes in generation 1: its read of g1:k returns 'old', but the generation read beside it
    // says 2, so the answer is a miss.
    expect(await b.get('k')).toBeUndefined()
    expect(await b.mget(['k'])).toEqual([undefined])
    expect(await b.has('k')).toBe(false)
  })

  it('a write or delete from an instance that has not seen the bump lands in the new generation', async () => {
    const { instance, redisOnly } = fleet()
    const a = instance()
    const stale = redisOnly()
    await stale.get('warm-up') // stale knows generation 1
    await a.bumpGeneration()
    await stale.set('k', 'from-stale')
    expect(await redisOnly().get('k')).toBe('from-stale')
    await a.set('d', 'doomed')
    const staleAgain = redisOnly()
    await staleAgain.get('warm-up')
    await a.bumpGeneration()
    await a.set('d', 'current')
    expect(await redisOnly().get('d')).toBe('current')
    await staleAgain.delete('d')
    expect(await redisOnly().get('d')).toBeUndefined()
  })

  it('prefix invalidation from an instance that has not seen the bump reaches the new generation', async () => {
    const { instance, redisOnly } = fleet()
    const a = instance()
    const stale = redisOnly()
    await stale.get('warm-up')
    await a.bumpGeneration()
    await a.mset([
      { key: 'user:1:a', value: 1 },
      { key: 'user:1:b', value: 2 },
    ])
    expect(await stale.invalidateByPrefix('user:1:')).toBe(2)
    expect(await redisOnly().mget(['user:1:a', 'user:1:b'])).toEqual([undefined, undefined])
  })

  it('the configured generation is a floor: a newer instance raises it for all, an older one joins', async () => {
    const { instance } = fleet()
    const old = instance({ generation: 3 })
    await old.set('k', 'v3')
    expect(await old.get('k')).toBe('v3')
    const newer = instance({ generation: 7 })
    await newer.set('k', 'v7')
    // The old instance's next remote trip moves it to 7 as well.
    await old.get('other')
    expect(old.generation).toBe(7)
    expect(await old.get('k')).toBe('v7')
    const late = instance({ generation: 1 })
    expect(await late.get('k')).toBe('v7')
    expect(late.generation).toBe(7)
  })

  it('bumps from several instances never go backwards, and clear() keeps the generation', async () => {
    const { instance, redisOnly } = fleet()
    const stacks = [instance(), instance(), instance()]
    const bumped = await Promise.all(stacks.map((stack) => stack.bumpGeneration()))
    expect([...bumped].sort()).toEqual([2, 3, 4])
    await stacks[0]!.set('k', 'v')
    await (stacks[0]!.layers[1] as RedisLayer).clear()
    const fresh = redisOnly()
    await fresh.get('k')
    expect(fresh.generation).toBe(4)
  })

  it('generationCleanup removes the old generation in batches and leaves the new one', async () => {
    const { client, prefix, instance } = fleet({ generation: 1, generationCleanup: { batchSize: 7 } })
    const a = instance()
    await a.mset(Array.from({ length: 50 }, (_, i) => ({ key: `item:${i}`, value: i })))
    const cleaned = new Promise((resolve) => a.on('generationCleanup', resolve))
    await a.bumpGeneration()
    await a.set('item:new', 'kept')
    expect(await cleaned).toEqual({ generation: 1, removed: 50 })
    const left = async (pattern: string) => {
      const nodes = 'nodes' in client ? client.nodes('master') : [client]
      const found = await Promise.all(nodes.map((node) => node.keys(pattern)))
      return found.flat()
    }
    expect(await left(`${prefix}:g1:*`)).toEqual([])
    expect(await left(`${prefix}:g2:*`)).toEqual([`${prefix}:g2:item:new`])
  })

  it('a shared generation that is not a whole number below 2^53 is refused: a corruptEntry event, never adopted', async () => {
    const { client, instance } = fleet()
    for (const held of [
      '9007199254740993',
      '99999999999999999999',
      'abc',
      '-3',
      '1e3',
      '1.5',
      ' 7',
      '0x10',
      '',
    ]) {
      const stack = instance()
      const key = generationKeyOf((stack.layers[1] as RedisLayer).prefix)
      await client.set(key, held)
      const refused: CacheEventMap['corruptEntry'][] = []
      stack.on('corruptEntry', (event) => refused.push(event))
      await stack.set('k', held)
      expect(await stack.get('k')).toBe(held) // it works on in the generation it has
      expect(stack.generation).toBe(1)
      expect(refused.length).toBeGreaterThan(0)
      expect(refused[0]).toMatchObject({ key, reason: 'unreadable' })
      expect(refused[0]!.error).toBeInstanceOf(CorruptEntryError)
      await expect(stack.bumpGeneration()).rejects.toBeInstanceOf(CorruptEntryError)
      expect(stack.generation).toBe(1)
      expect(await client.get(key)).toBe(held) // left as it is
    }
  })

  it('at the largest safe generation a bump is refused with a typed error and changes nothing', async () => {
    const { client, instance } = fleet()
    const stack = instance()
    const key = generationKeyOf((stack.layers[1] as RedisLayer).prefix)
    await client.set(key, String(Number.MAX_SAFE_INTEGER))
    await stack.set('k', 'v')
    expect(stack.generation).toBe(Number.MAX_SAFE_INTEGER)
    await expect(stack.bumpGeneration()).rejects.toBeInstanceOf(InvalidOperationError)
    expect(stack.generation).toBe(Number.MAX_SAFE_INTEGER)
    expect(await client.get(key)).toBe(String(Number.MAX_SAFE_INTEGER))
    expect(await stack.get('k')).toBe('v')
  })

  it('a load that began before a bump elsewhere never shows its value in the new generation', async () => {
    const { instance, redisOnly } = fleet()
    const a = instance()
    const b = instance()
    await b.get('warm-up')
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let began!: () => void
    const loaderRunning = new Promise<void>((resolve) => {
      began = resolve
    })
    const loading = b.getOrSet('page', async () => {
      began()
      await gate
      return 'rendered-before-the-bump'
    })
    await loaderRunning // the load has begun: its loader is reading the old data
    await a.bumpGeneration()
    release()
    expect(await loading).toBe('rendered-before-the-bump')
    expect(await redisOnly().get('page')).toBeUndefined()
    expect(await a.get('page')).toBeUndefined()
  })
})

describe.each(['standalone', 'cluster'] as const)(
  'generation bumps racing reads and writes on %s',
  (target) => {
    it('nothing written or loaded before a bump began is visible after it (race loop, 1000 rounds)', async () => {
      const client = redis.client(target)
      const prefix = redis.prefix(target, 'genrace')
      const a = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix })], { generation: 1 })
      const b = new CacheStack([new MemoryLayer(), new RedisLayer({ client, prefix })], { generation: 1 })
      const reader = () => new CacheStack([new RedisLayer({ client, prefix })], { generation: 1 })
      // Learns each bump only from its own reads: its first read after one races the bump.
      const lagging = reader()
      const leaked: string[] = []
      for (let round = 0; round < 1000; round++) {
        const key = `k${round % 20}`
        let bumpStarted = false
        const stale = `round ${round}, before the bump`
        const writes = [
          a.set(key, stale).then(() => (bumpStarted ? 'after' : 'before')),
          a
            .getOrSet(`load:${key}`, async () => {
              const startedBefore = !bumpStarted
              for (let turn = 0; turn < round % 5; turn++)
                await new Promise((resolve) => setImmediate(resolve))
              return startedBefore ? stale : 'loaded after the bump began'
            })
            .then(() => 'done'),
        ]
        for (let turn = 0; turn < round % 7; turn++) await new Promise((resolve) => setImmediate(resolve))
        bumpStarted = true
        await b.bumpGeneration()
        const setOutcome = await writes[0]
        await writes[1]
        const fresh = reader()
        // A set that resolved before the bump began, or a load that began before it, must not show.
        if (setOutcome === 'before' && (await lagging.get(key)) === stale)
          leaked.push(`lagging ${key} ${round}`)
        if (setOutcome === 'before' && (await fresh.get(key)) === stale) leaked.push(`set ${key} ${round}`)
        if ((await fresh.get(`load:${key}`)) === stale) leaked.push(`load ${key} ${round}`)
        if ((await b.get(`load:${key}`)) === stale) leaked.push(`b load ${key} ${round}`)
      }
      expect(leaked).toEqual([])
      expect(a.generation).toBeGreaterThan(1)
    })
  },
)
