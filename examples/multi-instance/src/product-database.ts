import type { Redis } from 'ioredis'

/**
 * Stands in for your database so the example needs nothing but Redis: products live in a Redis hash the
 * cache never touches. Reads are slowed down a little, as a real query would be.
 */
export class ProductDatabase {
  private readonly products: string
  private readonly readsKey: string

  /** `prefix`: where the fleet keeps its keys (the table is `<prefix>db:products`). */
  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.products = `${prefix}db:products`
    this.readsKey = `${prefix}db:reads`
  }

  async seed(products: readonly { id: string; name: string; price: number }[]): Promise<void> {
    for (const product of products) await this.redis.hset(this.products, product.id, JSON.stringify(product))
  }

  async find(id: string): Promise<{ id: string; name: string; price: number } | undefined> {
    await this.redis.incr(this.readsKey) // counted for the whole fleet, to show single-flight
    await new Promise((resolve) => setTimeout(resolve, 20))
    const row = await this.redis.hget(this.products, id)
    return row === null ? undefined : JSON.parse(row)
  }

  /** Database reads by every app so far. */
  async reads(): Promise<number> {
    return Number((await this.redis.get(this.readsKey)) ?? 0)
  }

  async updatePrice(id: string, price: number): Promise<void> {
    const text = await this.redis.hget(this.products, id)
    if (text === null) throw new Error(`no product ${id}`)
    const row = JSON.parse(text)
    await this.redis.hset(this.products, id, JSON.stringify({ ...row, price }))
  }
}
