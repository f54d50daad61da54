/**
 * Soft invalidation in Redis (StaleMarker): the entry is read, marked stale and written back in one
 * script that checks it is still the bytes read. Here a real RedisLayer's marker is driven with a host
 * that lets another connection change the key between the read and the script.
 */
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { RedisLayer } from '../src'
import { StaleMarker, type StaleMarkerHost } from '../src/stale-marker'

let redis: TestRedis
let client: Redis
let other: Redis
let n = 0

beforeAll(async () => {
  redis = await getTestRedis()
  client = redis.createClient()
  other = redis.createClient()
})
afterAll(() => redis.close())

/** The layer's own marker host, with `between` run (on another connection) after the read. */
function markerWith(layer: RedisLayer, between: () => Promise<unknown>): StaleMarker {
  const own = (layer as unknown as { staleMarker: { host: StaleMarkerHost; fenceMs: number } }).staleMarker
  const host: StaleMarkerHost = {
    ...own.host,
    readRaw: async (full) => {
      const raw = await own.host.readRaw(full)
      await between()
      return raw
    },
  }
  return new StaleMarker(host, own.fenceMs)
}

it('marks the entry stale in place, keeping its TTL and its index entries', async () => {
  const prefix = `${redis.keyPrefix}mark${++n}`
  const layer = new RedisLayer({ client, prefix })
  await layer.prepareWrites([
    {
      key: 'k',
      entry: { value: 'v', expiresAt: Date.now() + 60_000, tags: ['t'] },
      options: { ttl: 60_000 },
    },
  ])()
  expect(await layer.expireKeys(['k', 'missing'])).toEqual(['k'])
  const entry = await layer.get('k')
  expect(entry).toMatchObject({ value: 'v', tags: ['t'], expired: true })
  expect(entry!.freshUntil).toBeLessThanOrEqual(Date.now())
  expect(await client.pttl(`${prefix}:k`)).toBeGreaterThan(0)
  // Still found by a tag invalidation: the index is untouched.
  expect(await layer.invalidateTags(['t'], 'any')).toEqual(['k'])
})

it('never writes a key deleted between its read and its script', async () => {
  const prefix = `${redis.keyPrefix}mark${++n}`
  const layer = new RedisLayer({ client, prefix })
  await layer.prepareWrites([{ key: 'k', entry: { value: 'v', expiresAt: 0 } }])()
  const marker = markerWith(layer, () => other.del(`${prefix}:k`))
  expect(await marker.mark([`${prefix}:k`], 'expire')).toEqual(['absent'])
  expect(await other.exists(`${prefix}:k`)).toBe(0)
})

it('leaves a value written between its read and its script as it is (that write is newer)', async () => {
  const prefix = `${redis.keyPrefix}mark${++n}`
  const layer = new RedisLayer({ client, prefix })
  const writer = new RedisLayer({ client: other, prefix })
  await layer.prepareWrites([{ key: 'k', entry: { value: 'old', expiresAt: 0 } }])()
  const marker = markerWith(layer, async () => {
    await writer.prepareWrites([{ key: 'k', entry: { value: 'new', expiresAt: 0 } }])()
  })
  expect(await marker.mark([`${prefix}:k`], 'expire')).toEqual(['absent'])
  const entry = await layer.get('k')
  expect(entry?.value).toBe('new')
  expect(entry?.expired).toBeUndefined()
})

it('moves the key fence even when nothing is stored, so a load that began before does not write back', async () => {
  const prefix = `${redis.keyPrefix}mark${++n}`
  const layer = new RedisLayer({ client, prefix })
  const fences = new Map([[layer.name, await layer.fenceSnapshot('k', undefined)]])
  expect(await layer.expireKeys(['k'])).toEqual([])
  await expect(
    layer.prepareWrites([{ key: 'k', entry: { value: 'loaded', expiresAt: 0 }, options: { fences } }])(),
  ).rejects.toMatchObject({ code: 'WRITE_FENCED' })
  expect(await layer.get('k')).toBeUndefined()
})

it('a load’s write-back landing between the read and the marking is refused, not left fresh', async () => {
  // Found by the history checker (standalone-faults, seeds 10 and 17): the expiry read the key, a load
  // that began before the expiry wrote its value back, the marking saw another value and stood back, and
  // the loaded value stayed fresh. expireKeys moves the key's fence before it reads.
  const prefix = `${redis.keyPrefix}mark${++n}`
  const layer = new RedisLayer({ client, prefix })
  const loader = new RedisLayer({ client: other, prefix })
  await layer.prepareWrites([{ key: 'k', entry: { value: 'cached', expiresAt: 0 } }])()
  const fences = new Map([[loader.name, await loader.fenceSnapshot('k', undefined)]])
  let writeBack: Promise<unknown> | undefined
  const internals = layer as unknown as { staleMarker: StaleMarker }
  internals.staleMarker = markerWith(layer, async () => {
    writeBack = Promise.resolve(
      loader.prepareWrites([
        { key: 'k', entry: { value: 'loaded before', expiresAt: 0 }, options: { fences } },
      ])(),
    ).catch((error: unknown) => error)
    await writeBack
  })
  await layer.expireKeys(['k'])
  expect(await writeBack).toMatchObject({ code: 'WRITE_FENCED' })
  const entry = await layer.get('k')
  expect(entry?.value).toBe('cached')
  expect(entry?.expired).toBe(true)
})
