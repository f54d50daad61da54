import { setTimeout as sleep } from 'node:timers/promises'

export interface Product {
  readonly id: number
  readonly name: string
  readonly category: string
  readonly price: number
}

const SEED: readonly Product[] = [
  { id: 1, name: 'Anvil', category: 'tools', price: 249 },
  { id: 2, name: 'Rocket skates', category: 'travel', price: 1299 },
  { id: 3, name: 'Giant magnet', category: 'tools', price: 89 },
  { id: 4, name: 'Dehydrated boulders', category: 'garden', price: 15 },
]

/**
 * Stands in for the database: the products in memory, every query counted and taking a few milliseconds
 * (so that concurrent requests really are in flight together). Shared by every app instance, as one
 * database is.
 */
export class CatalogDb {
  queries = 0
  private readonly products = new Map(SEED.map((product) => [product.id, product]))

  async product(id: number): Promise<Product | undefined> {
    this.queries++
    await sleep(5)
    return this.products.get(id)
  }

  async category(category: string): Promise<Product[]> {
    this.queries++
    await sleep(5)
    return [...this.products.values()].filter((product) => product.category === category)
  }

  async updatePrice(id: number, price: number): Promise<Product | undefined> {
    await sleep(5)
    const product = this.products.get(id)
    if (product === undefined) return undefined
    const updated = { ...product, price }
    this.products.set(id, updated)
    return updated
  }
}
