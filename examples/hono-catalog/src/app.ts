import { cacheResponses, ResponseCache } from '@layercache/hono'
import type { Catalog } from '@layercache/test-utils/example-catalog'
import { Hono } from 'hono'
import type { CacheStack } from 'layercache'

/**
 * The catalogue's routes. GET routes go through the response cache, tagged with what they show; the PUT
 * purges those tags after the write, so the next GET of any page that showed the product runs again.
 */
export function createApp(cache: CacheStack, catalog: Catalog) {
  const responses = new ResponseCache({ cache, ttl: 60_000, staleWhileRevalidate: 30_000 })
  const app = new Hono()

  app.get('/products', cacheResponses(responses, { tags: ['products'] }), async (c) =>
    c.json(await catalog.list()),
  )

  app.get(
    '/products/:id',
    cacheResponses(responses, { tags: (c) => [`product:${c.req.param('id')}`] }),
    async (c) => {
      const product = await catalog.find(c.req.param('id'))
      if (product === undefined) return c.json({ error: 'not found' }, 404) // 404s are not stored
      return c.json(product)
    },
  )

  app.put('/products/:id', async (c) => {
    const { price } = await c.req.json<{ price: number }>()
    const updated = catalog.update(c.req.param('id'), Number(price))
    if (updated === undefined) return c.json({ error: 'not found' }, 404)
    // After the write: the product's page and every list that shows it.
    await responses.purge(`product:${updated.id}`, 'products')
    return c.json(updated)
  })

  return app
}
