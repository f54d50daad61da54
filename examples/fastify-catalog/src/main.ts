/**
 * # examples/fastify-catalog: Fastify pages cached by the @layercache/fastify plugin
 *
 *   GET /products        the list, cached, tagged `products`
 *   GET /products/:id    one product, cached, tagged `product:<id>` (a 404 is not stored)
 *   PUT /products/:id    changes the price, then purges `product:<id>` and `products`
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-fastify-catalog start   # starts the app, plays a client against it
 *   pnpm --filter @layercache/example-fastify-catalog serve   # keeps it up for curl; Ctrl-C stops
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own. PORT picks the port (default: any free one).
 */

import { runCatalogExample } from '@layercache/test-utils/example-catalog'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { createApp } from './app'

await runCatalogExample({
  framework: 'Fastify',
  makeCache: (client, prefix) =>
    new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client, prefix })]),
  async start(cache, catalog, port) {
    const app = await createApp(cache, catalog)
    const base = await app.listen({ port, host: '127.0.0.1' })
    return { base, close: () => app.close() }
  },
})
