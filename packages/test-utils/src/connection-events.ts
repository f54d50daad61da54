import type { Redis } from 'ioredis'

/**
 * Resolves once `client` emits `event`, or at once if `already()` holds; rejects after `timeoutMs`
 * (generous: only a client that never gets there fails, a slow one does not).
 */
function statusEvent(
  client: Redis,
  event: 'close' | 'ready',
  already: () => boolean,
  what: string,
  timeoutMs: number,
): Promise<void> {
  if (already()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const reached = () => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      client.off(event, reached)
      reject(new Error(`the client did not ${what} within ${timeoutMs} ms (status ${client.status})`))
    }, timeoutMs)
    client.once(event, reached)
  })
}

/**
 * Resolves once `client` has noticed that its connection closed (a killed or restarted server): its status
 * is no longer 'ready'. ioredis changes the status when the socket closes and emits 'close' a tick later,
 * so a client already past 'ready' resolves at once. Call it before the server goes away when the client
 * is ready now, and await it after.
 */
export function connectionLost(client: Redis, timeoutMs = 10_000): Promise<void> {
  return statusEvent(
    client,
    'close',
    () => client.status !== 'ready',
    'notice its connection close',
    timeoutMs,
  )
}

/** Resolves once `client` is connected and ready for commands (at once if it is now). */
export function connectionReady(client: Redis, timeoutMs = 10_000): Promise<void> {
  return statusEvent(client, 'ready', () => client.status === 'ready', 'get ready', timeoutMs)
}
