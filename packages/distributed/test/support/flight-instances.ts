import { createHash } from 'node:crypto'
import { CacheStack, type CacheStackOptions } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { duplicateClient } from '@layercache/test-utils'
import type { Cluster, Redis } from 'ioredis'
import { RedisSingleFlightCoordinator, type RedisSingleFlightCoordinatorOptions } from '../../src'

export type AnyClient = Redis | Cluster

export interface FlightInstance {
  readonly stack: CacheStack
  readonly coordinator: RedisSingleFlightCoordinator
  readonly memory: MemoryLayer
  readonly client: AnyClient
  close(): Promise<void>
}

/**
 * One app instance: its own connection (a duplicate of `base`), memory layer, Redis layer and coordinator
 * (whose subscriber it makes itself), all instances sharing `prefix`.
 */
export function startFlightInstance(
  base: AnyClient,
  prefix: string,
  options: { coordinator?: Partial<RedisSingleFlightCoordinatorOptions>; stack?: CacheStackOptions } = {},
): FlightInstance {
  const client = duplicateClient(base) as AnyClient
  client.on('error', () => {})
  const coordinator = new RedisSingleFlightCoordinator({
    client,
    prefix: `${prefix}sf:`,
    ...options.coordinator,
  })
  const memory = new MemoryLayer({ ttl: 60_000 })
  const stack = new CacheStack([memory, new RedisLayer({ client, prefix })], {
    singleFlightCoordinator: coordinator,
    ...options.stack,
  })
  return {
    stack,
    coordinator,
    memory,
    client,
    async close() {
      stack.close()
      await coordinator.close()
      client.disconnect()
    },
  }
}

/** A key of the coordinator for a stored key (no namespace or generation: the key itself). */
export function leaseKeyOf(
  prefix: string,
  key: string,
  part: 'lease' | 'token' | 'result' = 'lease',
): string {
  return `${prefix}sf:{${createHash('sha256').update(key).digest('hex').slice(0, 20)}}:${part}`
}

export interface Gate {
  readonly opened: Promise<void>
  open(): void
}

export function gate(): Gate {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

export { eventually } from './eventually'
