export interface Product {
  readonly id: number
  readonly name: string
  readonly category: string
  price: number
  featured: boolean
}

/** A product database that counts its queries and answers after a small delay, like a real one. */
export class CatalogDb {
  queries = 0
  /** How long a product query takes, in milliseconds. */
  latencyMs = 1
  private readonly products = new Map<number, Product>()

  constructor() {
    for (let id = 1; id <= 600; id++) {
      const category = id <= 500 ? 'electronics' : 'garden'
      this.products.set(id, { id, name: `Product ${id}`, category, price: 100 + id, featured: id <= 3 })
    }
  }

  async product(id: number): Promise<Product> {
    this.queries++
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs))
    const product = this.products.get(id)
    if (product === undefined) throw new Error(`no product ${id}`)
    return { ...product }
  }

  async featuredIds(): Promise<number[]> {
    this.queries++
    return [...this.products.values()].filter((p) => p.featured).map((p) => p.id)
  }

  setPrice(id: number, price: number): void {
    this.products.get(id)!.price = price
  }

  discountCategory(category: string, percent: number): void {
    for (const product of this.products.values()) {
      if (product.category === category) product.price = Math.round(product.price * (1 - percent / 100))
    }
  }
}
