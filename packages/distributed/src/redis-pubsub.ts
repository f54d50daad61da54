/** Plain or sharded pub/sub (SPUBLISH/SSUBSCRIBE, on a Cluster), as the bus and the coordinator use it. */

import { bounded, LayerTimeoutError } from '@layercache/core'
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

/**
 * Leaves the channel; a connection already gone has nothing left to undo. Bounded: a Redis that does not
 * answer within `timeoutMs` (paused, overloaded, unreachable behind an open socket) must not hold up a
 * close; then it rejects with LayerTimeoutError, and the connection is left subscribed (its messages are
 * no longer heard) until its owner closes it.
 */
export async function unsubscribeFrom(
  subscriber: RedisClient,
  channel: string,
  sharded: boolean,
  component: string,
  timeoutMs: number,
): Promise<void> {
  const leaving = sharded ? (subscriber as Redis).sunsubscribe(channel) : subscriber.unsubscribe(channel)
  // The connection may already be gone; nothing is left to undo.
  const left = leaving.then(
    () => undefined,
    () => undefined,
  )
  await bounded(left, timeoutMs, () => new LayerTimeoutError(component, 'unsubscribe', timeoutMs))
}
