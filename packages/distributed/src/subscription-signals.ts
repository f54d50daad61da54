import { isCluster, type RedisClient } from './redis-pubsub'

/** What a subscriber client's events say about its subscription. */
export interface SubscriptionSignals {
  /** It may be gone: messages published from now on may not be heard. */
  lost(detail: string): void
  /** ioredis may have restored it (it resubscribes by itself); subscribe once more to know when. */
  back(): void
}

type Handler = (...args: unknown[]) => void

/**
 * Listens to the events of `subscriber` that tell its subscription may have been lost or restored, and
 * returns the function that stops listening.
 *
 * - A Redis client: `close`, then `ready` once reconnected.
 * - A Cluster with sharded subscribers keeps one connection per master, which ioredis replaces on its own
 *   when it drops: it ends (`-node`, with the node) and is replaced (`-subscriber`), and
 *   `subscribersReady` follows once the replacements are connected and asked to resubscribe. That event
 *   also follows any change of the slot map, which may have moved the channel's slot to another master,
 *   so it counts as a loss too. The whole Cluster closing stops them without those events: `close`.
 * - A Cluster with classic pub/sub: ioredis swaps a dropped subscriber connection without any event. Only
 *   the Cluster's own `close` and `ready` are seen; a loss in between shows as a gap in a sender's numbers
 *   at its next message (within a heartbeat).
 */
export function watchSubscription(
  subscriber: RedisClient,
  sharded: boolean,
  signals: SubscriptionSignals,
): () => void {
  const handlers: [string, Handler][] = [['close', () => signals.lost('subscriber connection lost')]]
  if (isCluster(subscriber) && sharded) {
    handlers.push(
      [
        '-node',
        (_redis, node) => signals.lost(`connection to ${typeof node === 'string' ? node : 'a node'} ended`),
      ],
      ['-subscriber', () => signals.lost('a sharded subscriber connection was replaced')],
      [
        'subscribersReady',
        () => {
          signals.lost('sharded subscribers were reset')
          signals.back()
        },
      ],
    )
  } else {
    handlers.push(['ready', () => signals.back()])
  }
  for (const [event, handler] of handlers) subscriber.on(event, handler)
  return () => {
    for (const [event, handler] of handlers) subscriber.off(event, handler)
  }
}
