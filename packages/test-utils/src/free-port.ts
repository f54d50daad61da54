import { createServer } from 'node:net'

/** Asks the kernel for an unused TCP port on 127.0.0.1. Racy by nature: callers must retry on EADDRINUSE. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : undefined
      server.close((error) => {
        if (error) reject(error)
        else if (port === undefined) reject(new Error(`freePort: unexpected address ${String(address)}`))
        else resolve(port)
      })
    })
  })
}
