/** What the example's client did. */
export interface TrafficSummary {
  readonly requests: number
  readonly products: number
}

/**
 * Reads 10 products 20 times each (the first read of each misses, the rest hit memory), changes one
 * price, and reads that product again (a miss: the change invalidated it).
 */
export async function driveTraffic(url: string): Promise<TrafficSummary> {
  const products = 10
  let requests = 0
  const get = async (path: string, init?: RequestInit) => {
    requests++
    const response = await fetch(`${url}${path}`, init)
    if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: HTTP ${response.status}`)
    return response.json()
  }
  for (let round = 0; round < 20; round++) {
    await Promise.all(Array.from({ length: products }, (_, i) => get(`/products/${i + 1}`)))
  }
  await get('/products/1?priceCents=999', { method: 'PUT' })
  const changed = (await get('/products/1')) as { priceCents: number }
  if (changed.priceCents !== 999) throw new Error(`a read after the change answered ${changed.priceCents}`)
  return { requests, products }
}

/** GET /metrics as text. */
export async function scrape(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`)
  if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`)
  return response.text()
}
