import { createEntry, WriteFencedError } from '@layercache/core'
import { useRedisAndCluster } from '@layercache/test-utils/redis-and-cluster'
import { describe, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import type { RedisFence } from '../src/fenced-write'
import { RedisTagStore } from '../src/redis-tag-store'

const redis = useRedisAndCluster()

type Target = 'standalone' | 'cluster'

function setup(target: Target) {
  const layer = new RedisLayer({ client: redis.client(target), prefix: redis.prefix(target, 'tags') })
  const store = new RedisTagStore(layer)
  const raw = layer.client
  /**
   * A plain tagged write through the tag store, or with `since` (tag epochs from the start of a load) a
   * load's write-back through the layer; resolves whether the value was kept.
   */
  const put = async (key: string, tags: readonly string[], value = 'v', since?: Map<string, string>) => {
    if (since === undefined) {
      return store.write(
        key,
        tags,
        Date.now() + 60_000,
        async () => void (await raw.set(layer.prefix + key, value)),
      )
    }
    const snapshot = (await layer.fenceSnapshot(key, tags)) as RedisFence
    const fences = new Map([[layer.name, { ...snapshot, epochs: since }]])
    try {
      await layer.prepareWrites([
        { key, entry: createEntry(value, 60_000, tags), options: { ttl: 60_000, fences } },
      ])()
      return true
    } catch (error) {
      if (error instanceof WriteFencedError) return false
      throw error
    }
  }
  const exists = async (key: string) => (await raw.exists(layer.prefix + key)) === 1
  return { layer, store, raw, put, exists }
}

describe.each(['standalone', 'cluster'] as const)('RedisTagStore on %s Redis', (target) => {
  it('invalidates every key of a tag, and only those, returning what it removed', async () => {
    const { store, put, exists, raw } = setup(target)
    for (let i = 0; i < 50; i++) await put(`user:1:item:${i}`, ['user:1', i % 2 === 0 ? 'even' : 'odd'])
    await put('user:2:profile', ['user:2'])
    const removed = await store.invalidate(['user:1'], 'any')
    expect(removed.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `user:1:item:${i}`).sort())
    expect(await exists('user:1:item:0')).toBe(false)
    expect(await exists('user:2:profile')).toBe(true)
    expect(await store.invalidate(['user:1'], 'any')).toEqual([])
    // The invalidation removed the memberships it read (before unlinking), so the index shrinks with it.
    expect(await raw.zcard(store.tagSetKey('user:1'))).toBe(0)
  })

  it("'all' removes only keys carrying every tag; 'any' removes keys carrying one", async () => {
    const { store, put, exists } = setup(target)
    await put('a1', ['tenant:a', 'admin'])
    await put('a2', ['tenant:a', 'admin'])
    await put('a3', ['tenant:a'])
    await put('b1', ['tenant:b', 'admin'])
    expect((await store.invalidate(['tenant:a', 'admin'], 'all')).sort()).toEqual(['a1', 'a2'])
    expect(await exists('a3')).toBe(true)
    expect(await exists('b1')).toBe(true)
    expect((await store.invalidate(['tenant:b', 'missing'], 'any')).sort()).toEqual(['b1'])
    // The surviving membership of a3 still works.
    expect(await store.invalidate(['tenant:a'], 'any')).toEqual(['a3'])
  })

  it('a write whose tag was invalidated after its snapshot removes its own value', async () => {
    const { store, put, exists } = setup(target)
    const since = new Map(await store.epochs(['price']))
    await store.invalidate(['price'], 'any') // lands while the "load" runs
    expect(await put('p1', ['price'], 'loaded-before', since)).toBe(false)
    expect(await exists('p1')).toBe(false)
    // A write that starts afterwards is kept.
    expect(await put('p1', ['price'], 'fresh')).toBe(true)
    expect(await exists('p1')).toBe(true)
  })

  it('members whose value expired are collected when the tag is written again, and the set expires', async () => {
    const { store, raw, layer } = setup(target)
    const setKey = store.tagSetKey('short')
    // Scored as if it had expired two minutes ago: collection waits out a grace period for clock skew.
    await store.write(
      'old',
      ['short'],
      Date.now() - 120_000,
      async () => void (await raw.set(`${layer.prefix}old`, 'v', 'PX', 30)),
    )
    // Time must pass: the old value's 30 ms PX lapses, so the member is one whose value really expired.
    // (Collection goes by the member's score, so nothing below races this wait.)
    await new Promise((resolve) => setTimeout(resolve, 60))
    await store.write(
      'new',
      ['short'],
      Date.now() + 5_000,
      async () => void (await raw.set(`${layer.prefix}new`, 'v', 'PX', 5_000)),
    )
    expect(await raw.zrange(setKey, 0, -1)).toEqual([`${layer.prefix}new`])
    const ttl = await raw.pttl(setKey)
    expect(ttl).toBeGreaterThan(5_000)
    expect(ttl).toBeLessThanOrEqual(5_000 + 60_000)
  })

  it('never leaves a live value behind an invalidation that began after its snapshot (race loop)', async () => {
    const { store, put, exists, raw, layer } = setup(target)
    let violations = 0
    let fenced = 0
    for (let i = 0; i < 300; i++) {
      const key = `race:${i % 10}`
      const since = new Map(await store.epochs(['t']))
      const [kept, epochAfterIncr] = await Promise.all([
        put(key, ['t'], `v${i}`, since),
        (async () => {
          if (Math.random() < 0.5) await new Promise((resolve) => setImmediate(resolve))
          await store.invalidate(['t'], 'any')
          return (await store.epochs(['t'])).get('t')
        })(),
      ])
      if (!kept) fenced++
      // The snapshot precedes the invalidation's INCR in every iteration, so the value must not survive it,
      // whichever of the two reached Redis first.
      if (epochAfterIncr !== since.get('t') && (await exists(key))) violations++
      // Whatever is left must still be findable through the tag.
      if (await exists(key)) {
        const member = await raw.zscore(store.tagSetKey('t'), layer.prefix + key)
        if (member === null) violations++
      }
    }
    expect(violations).toBe(0)
    expect(fenced).toBeGreaterThan(0)
  })

  it('a value kept next to a concurrent invalidation is always still tracked by its tag (race loop)', async () => {
    const { store, put, exists, raw, layer } = setup(target)
    let untracked = 0
    let kept = 0
    for (let i = 0; i < 300; i++) {
      const key = `plain:${i % 10}`
      // No snapshot: the write counts from its own first step, like a set() that is the newer truth.
      const [wasKept] = await Promise.all([
        (async () => {
          // Start the write anywhere from before the invalidation to inside it.
          for (let hops = Math.floor(Math.random() * 4); hops > 0; hops--) {
            await new Promise((resolve) => setImmediate(resolve))
          }
          return put(key, ['t2'], `v${i}`)
        })(),
        (async () => {
          if (Math.random() < 0.5) await new Promise((resolve) => setImmediate(resolve))
          await store.invalidate(['t2'], 'any')
        })(),
      ])
      if (wasKept && (await exists(key))) {
        kept++
        if ((await raw.zscore(store.tagSetKey('t2'), layer.prefix + key)) === null) untracked++
      }
    }
    expect(untracked).toBe(0)
    expect(kept).toBeGreaterThan(0)
  })
})
