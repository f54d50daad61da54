/** A stand-in for a slow product database that counts its queries, so the demo can show what the cache saves. */
export interface Product {
  id: string
  name: string
  price: number
}

export class ProductDb {
  queries = 0
  private readonly rows = new Map<string, Product>([
    ['1', { id: '1', name: 'Espresso machine', price: 349 }],
    ['2', { id: '2', name: 'Coffee grinder', price: 129 }],
  ])

  constructor(private readonly latencyMs = 40) {}

  async findProduct(id: string): Promise<Product | null> {
    this.queries++
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs))
    const row = this.rows.get(id)
    return row ? { ...row } : null
  }

  async updatePrice(id: string, price: number): Promise<void> {
    const row = this.rows.get(id)
    if (row) row.price = price
  }
}
