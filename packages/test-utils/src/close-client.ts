import type { Cluster, Redis } from 'ioredis'

/**
 * QUITs a ready client (bounded, since the server may be paused) and then disconnects, which also stops
 * ioredis from reconnecting. Clients that are not ready are just disconnected: QUIT would wait for a
 * connection, or even open one for a lazyConnect client.
 */
export async function closeClient(client: Redis | Cluster, timeoutMs = 1000): Promise<void> {
  if (client.status === 'end') return
  if (client.status === 'ready') {
    // Swallow the late rejection a timed-out QUIT gets once disconnect() closes the connection.
    const quitting = client.quit().catch(() => undefined)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([quitting, timeout])
    clearTimeout(timer)
  }
  client.disconnect()
}
