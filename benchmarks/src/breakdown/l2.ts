import type { Redis } from 'ioredis'
import { CacheStack, LayerTimeoutError, RedisLayer } from 'layercache'
import type { BenchContext } from '../context'
import { makeKeys, PAYLOAD, PAYLOAD_JSON, type Product } from '../payload'
import { compareVariants, printVariants } from './harness'

/** The same timeout wrapper shape RedisLayer puts around every command (setTimeout + new Promise). */
function withTimeout<T>(ms: number, command: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LayerTimeoutError('redis', 'get', ms)), ms)
    command().then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

function variantsFor(client: Redis, prefix: string, keys: readonly string[]) {
  const layerPrefix = `${prefix}ours:`
  const rawPrefix = `${prefix}raw:`
  const layer = new RedisLayer({ client, ttl: 600_000, prefix: layerPrefix })
  const cache = new CacheStack([layer])
  const setup = async () => {
    await cache.mset(keys.map((key) => ({ key, value: PAYLOAD })))
    const pipe = client.pipeline()
    for (const key of keys) pipe.set(rawPrefix + key, PAYLOAD_JSON, 'PX', 600_000)
    await pipe.exec()
  }
  const parse = (text: string | null) => (text === null ? undefined : (JSON.parse(text) as Product))
  const variants = [
    {
      name: 'raw: JSON.parse(await client.get(rawKey))',
      op: async (k: string) => parse(await client.get(rawPrefix + k)),
    },
    {
      name: 'raw get of our stored envelope + JSON.parse(text)[3]',
      op: async (k: string) => {
        const text = await client.get(layerPrefix + k)
        return text === null ? undefined : (JSON.parse(text) as unknown[])[3]
      },
    },
    {
      name: 'raw get + parse inside a setTimeout/Promise timeout wrapper',
      op: async (k: string) => parse(await withTimeout(1000, () => client.get(rawPrefix + k))),
    },
    { name: 'redisLayer.get(k) (no stack)', op: async (k: string) => (await layer.get(k))?.value },
    { name: 'CacheStack([RedisLayer]).get(k)', op: (k: string) => cache.get(k) },
  ]
  return { setup, variants }
}

/** Where the time of an L2 hit goes: payload format, timeout wrapper, layer, stack. */
export async function l2Breakdown(ctx: BenchContext): Promise<void> {
  const keys = makeKeys(1000)
  const single = variantsFor(ctx.client, `${ctx.prefix}bd:l2:`, keys)
  await single.setup()
  printVariants(
    'L2 hit, 1 caller, breakdown (median ns/op, ratio to the first line: median of rounds (min–max))',
    await compareVariants(single.variants, keys, { warmupOps: 3000, rounds: 12, opsPerRound: 2000 }),
  )
  const piped = variantsFor(ctx.pipelinedClient, `${ctx.prefix}bd:l2c:`, keys)
  await piped.setup()
  printVariants(
    'L2 hit, 100 concurrent (auto-pipelining), breakdown (median ns/op = 1 / throughput)',
    await compareVariants(piped.variants, keys, {
      warmupOps: 20_000,
      rounds: 12,
      opsPerRound: 10_000,
      concurrency: 100,
    }),
  )
}
