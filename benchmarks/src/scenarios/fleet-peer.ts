// One app instance of the fleet-stampede benchmark, in its own process: two CacheStacks (memory over
// Redis) on one connection, one with a RedisSingleFlightCoordinator and one with local single-flight only.
// `run` fires `count` concurrent getOrSet misses of a cold key at one of them, whose loader simulates a
// database query of `loadMs`, and reports its loader calls.
import { setTimeout as delay } from 'node:timers/promises'
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisLayer, RedisSingleFlightCoordinator } from 'layercache'
import { PAYLOAD, type Product } from '../payload'

export interface FleetPeerInit {
  readonly url: string
  readonly prefix: string
}

export type FleetSide = 'coordinated' | 'local'

const api = async (init: FleetPeerInit) => {
  const client = new Redis(init.url)
  const coordinator = new RedisSingleFlightCoordinator({ client, prefix: `${init.prefix}sf:` })
  const stacks: Record<FleetSide, CacheStack> = {
    coordinated: new CacheStack(
      [new MemoryLayer({ ttl: 600_000 }), new RedisLayer({ client, prefix: `${init.prefix}c:` })],
      { singleFlightCoordinator: coordinator },
    ),
    local: new CacheStack([
      new MemoryLayer({ ttl: 600_000 }),
      new RedisLayer({ client, prefix: `${init.prefix}l:` }),
    ]),
  }
  return {
    async run(side: FleetSide, key: string, count: number, loadMs: number) {
      let calls = 0
      const loader = async (): Promise<Product> => {
        calls++
        await delay(loadMs)
        return PAYLOAD
      }
      const stack = stacks[side]
      stack.resetStats()
      const values = await Promise.all(Array.from({ length: count }, () => stack.getOrSet(key, loader)))
      if (values.some((value) => value.id !== PAYLOAD.id))
        throw new Error(`${side}: a caller got a wrong value`)
      return { calls, stats: stack.getStats() }
    },
    coordinatorStats: () => coordinator.stats,
    async close() {
      await coordinator.close()
      client.disconnect()
    },
  }
}

export type FleetPeerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
