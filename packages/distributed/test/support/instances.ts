import { CacheStack, type CacheStackOptions } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'
import { RedisInvalidationBus, type RedisInvalidationBusOptions } from '../../src'

export type AnyClient = Redis | Cluster

/** A subscriber connection of its own, as a user would make it (sharded subscribers on a Cluster). */
export function subscriberFor(client: AnyClient): AnyClient {
  if ((client as Cluster).isCluster)
    return (client as Cluster).duplicate(undefined, { shardedSubscribers: true })
  return (client as Redis).duplicate()
}

export interface Instance {
  readonly stack: CacheStack
  readonly bus: RedisInvalidationBus
  readonly subscriber: AnyClient
  close(): Promise<void>
}

/**
 * One app instance: its own memory layer and bus (own subscriber connection) over the shared Redis layer.
 * Resolves once its bus subscription is live.
 */
export async function startInstance(
  client: AnyClient,
  prefix: string,
  options: {
    bus?: Partial<RedisInvalidationBusOptions>
    stack?: CacheStackOptions
    subscriber?: AnyClient
  } = {},
): Promise<Instance> {
  const subscriber = options.subscriber ?? subscriberFor(client)
  subscriber.on('error', () => {}) // reconnect noise while fault tests stop Redis; the bus reports what matters
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: `${prefix}bus`,
    // Slow enough that a loaded CI machine never misses one (tests of detection pass their own).
    heartbeatMs: 1000,
    ...options.bus,
  })
  const stack = new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix })], {
    invalidationBus: bus,
    ...options.stack,
  })
  await bus.ready
  return {
    stack,
    bus,
    subscriber,
    async close() {
      stack.close()
      await bus.close()
      subscriber.disconnect()
    },
  }
}

/**
 * Waits until every bus has heard each of the others (as joining instances do within a round trip: each
 * answers a newcomer's join epoch with a heartbeat), so no first message heard from a peer is still to come.
 */
export async function acquainted(buses: readonly RedisInvalidationBus[]): Promise<void> {
  const knows = (bus: RedisInvalidationBus, other: RedisInvalidationBus) =>
    (bus as unknown as { senders: { knows(id: string): boolean } }).senders.knows(other.id)
  await eventually(
    () => buses.every((bus) => buses.every((other) => other === bus || knows(bus, other))),
    'every instance heard every other',
  )
}

/** The entry the instance's memory layer holds for `key`, without going to Redis. */
export function inMemory(instance: Instance, key: string): unknown {
  return instance.stack.layers[0]!.get(key)
}

import { eventually } from './eventually'

export { eventually }
