/**
 * # examples/hono-catalog: Hono pages cached by @layercache/hono, served by @hono/node-server
 *
 *   GET /products        the list, cached, tagged `products`
 *   GET /products/:id    one product, cached, tagged `product:<id>` (a 404 is not stored)
 *   PUT /products/:id    changes the price, then purges `product:<id>` and `products`
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-hono-catalog start   # starts the app, plays a client against it
 *   pnpm --filter @layercache/example-hono-catalog serve   # keeps it up for curl; Ctrl-C stops
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own. PORT picks the port (default: any free one).
 */
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { runCatalogExample } from '@layercache/test-utils/example-catalog'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { createApp } from './app'

await runCatalogExample({
  framework: 'Hono',
  makeCache: (client, prefix) =>
    new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix })]),
  async start(cache, catalog, port) {
    const app = createApp(cache, catalog)
    const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }) as Server
    if (!server.listening) await once(server, 'listening')
    return {
      base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      async close() {
        server.closeAllConnections()
        server.close()
      },
    }
  },
})
