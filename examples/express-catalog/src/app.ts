import { cacheResponses, ResponseCache } from '@layercache/express'
import type { Catalog } from '@layercache/test-utils/example-catalog'
import express, { type Express, type Request } from 'express'
import type { CacheStack } from 'layercache'

/**
 * The catalogue's routes. GET pages go through the response cache, tagged with what they show; the PUT
 * purges those tags after the write, so the next GET of any page that showed the product runs again.
 */
export function createApp(cache: CacheStack, catalog: Catalog): Express {
  const responses = new ResponseCache({ cache, ttl: 60_000, staleWhileRevalidate: 30_000 })
  const app = express()
  app.use(express.json())

  app.get('/products', cacheResponses(responses, { tags: ['products'] }), async (_req, res) => {
    res.json(await catalog.list())
  })

  app.get(
    '/products/:id',
    cacheResponses<Request>(responses, { tags: (req) => [`product:${req.params.id}`] }),
    async (req, res) => {
      const product = await catalog.find(String(req.params.id))
      if (product === undefined)
        res.status(404).json({ error: 'not found' }) // 404s are not stored
      else res.json(product)
    },
  )

  app.put('/products/:id', async (req, res) => {
    const updated = catalog.update(String(req.params.id), Number(req.body?.price))
    if (updated === undefined) {
      res.status(404).json({ error: 'not found' })
      return
    }
    // After the write: the product's page and every list that shows it.
    await responses.purge(`product:${updated.id}`, 'products')
    res.json(updated)
  })

  return app
}
