/** Plain or sharded pub/sub (SPUBLISH/SSUBSCRIBE, on a Cluster), as the bus and the coordinator use it. */

import type { RedisClient } from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'

export type { RedisClient }

export function isCluster(client: RedisClient): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true
}

/** The subscriber event that carries the channel's messages. */
export function messageEvent(sharded: boolean): 'smessage' | 'message' {
  return sharded ? 'smessage' : 'message'
}

export function subscribeTo(subscriber: RedisClient, channel: string, sharded: boolean): Promise<unknown> {
  return sharded ? (subscriber as Redis).ssubscribe(channel) : subscriber.subscribe(channel)
}

/** Leaves the channel; a connection already gone has nothing left to undo. */
export async function unsubscribeFrom(
  subscriber: RedisClient,
  channel: string,
  sharded: boolean,
): Promise<void> {
  try {
    if (sharded) await (subscriber as Redis).sunsubscribe(channel)
    else await subscriber.unsubscribe(channel)
  } catch {
    // The connection may already be gone; nothing is left to undo.
  }
}
