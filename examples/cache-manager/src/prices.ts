import type { Cache } from 'cache-manager'

/** Stands in for the database: prices by product id, every read counted. */
export class PriceDb {
  reads = 0
  private readonly prices = new Map<number, number>([
    [1, 249],
    [2, 1299],
  ])

  async price(id: number): Promise<number | undefined> {
    this.reads++
    await Promise.resolve() // a query yields, as a real one does
    return this.prices.get(id)
  }

  async setPrice(id: number, price: number): Promise<void> {
    await Promise.resolve()
    this.prices.set(id, price)
  }
}

/**
 * Application code written for cache-manager, as it is before and after the move: it knows the `Cache`
 * interface and nothing of the store behind it.
 */
export class PriceService {
  constructor(
    private readonly cache: Cache,
    private readonly db: PriceDb,
  ) {}

  price(id: number): Promise<number | undefined> {
    return this.cache.wrap(`price:${id}`, () => this.db.price(id), 60_000)
  }

  async setPrice(id: number, price: number): Promise<void> {
    await this.db.setPrice(id, price)
    await this.cache.del(`price:${id}`)
  }
}
