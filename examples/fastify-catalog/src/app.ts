import { fastifyResponseCache, ResponseCache } from '@layercache/fastify'
import type { Catalog } from '@layercache/test-utils/example-catalog'
import Fastify from 'fastify'
import type { CacheStack } from 'layercache'

/**
 * The catalogue's routes. The plugin is registered first; GET routes opt in with `config.cache`, tagged
 * with what they show; the PUT purges those tags after the write.
 */
export async function createApp(cache: CacheStack, catalog: Catalog) {
  const responses = new ResponseCache({ cache, ttl: 60_000, staleWhileRevalidate: 30_000 })
  const app = Fastify()
  await app.register(fastifyResponseCache, { responses })

  app.get('/products', { config: { cache: { tags: ['products'] } } }, async () => catalog.list())

  app.get<{ Params: { id: string } }>(
    '/products/:id',
    { config: { cache: { tags: (request) => [`product:${(request.params as { id: string }).id}`] } } },
    async (request, reply) => {
      const product = await catalog.find(request.params.id)
      if (product === undefined) return reply.code(404).send({ error: 'not found' }) // 404s are not stored
      return product
    },
  )

  app.put<{ Params: { id: string }; Body: { price: number } }>('/products/:id', async (request, reply) => {
    const updated = catalog.update(request.params.id, Number(request.body.price))
    if (updated === undefined) return reply.code(404).send({ error: 'not found' })
    // After the write: the product's page and every list that shows it.
    await responses.purge(`product:${updated.id}`, 'products')
    return updated
  })

  return app
}
