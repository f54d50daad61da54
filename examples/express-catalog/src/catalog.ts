/** The "database" of the example: products in a Map, with a count of the reads that reached it. */
export interface Product {
  readonly id: string
  readonly name: string
  readonly price: number
}

export class Catalog {
  reads = 0
  readonly #products = new Map<string, Product>([
    ['1', { id: '1', name: 'Kettle', price: 39 }],
    ['2', { id: '2', name: 'Teapot', price: 25 }],
    ['3', { id: '3', name: 'Mug', price: 9 }],
  ])

  /** A read that takes `delayMs`, like a query to a busy database. */
  async find(id: string, delayMs = 20): Promise<Product | undefined> {
    this.reads++
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    return this.#products.get(id)
  }

  async list(): Promise<Product[]> {
    this.reads++
    return [...this.#products.values()]
  }

  update(id: string, price: number): Product | undefined {
    const product = this.#products.get(id)
    if (product === undefined) return undefined
    const updated = { ...product, price }
    this.#products.set(id, updated)
    return updated
  }
}
