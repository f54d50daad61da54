import type { Redis } from 'ioredis'

/**
 * Stands in for your database so the example needs nothing but Redis: products live in a Redis hash the
 * cache never touches. Reads are slowed down a little, as a real query would be.
 */
export class ProductDatabase {
  constructor(private readonly redis: Redis) {}

  async seed(products: readonly { id: string; name: string; price: number }[]): Promise<void> {
    for (const product of products)
      await this.redis.hset('shop:db:products', product.id, JSON.stringify(product))
  }

  async find(id: string): Promise<{ id: string; name: string; price: number } | undefined> {
    await this.redis.incr('shop:db:reads') // counted for the whole fleet, to show single-flight
    await new Promise((resolve) => setTimeout(resolve, 20))
    const row = await this.redis.hget('shop:db:products', id)
    return row === null ? undefined : JSON.parse(row)
  }

  /** Database reads by every app so far. */
  async reads(): Promise<number> {
    return Number((await this.redis.get('shop:db:reads')) ?? 0)
  }

  async updatePrice(id: string, price: number): Promise<void> {
    const text = await this.redis.hget('shop:db:products', id)
    if (text === null) throw new Error(`no product ${id}`)
    const row = JSON.parse(text)
    await this.redis.hset('shop:db:products', id, JSON.stringify({ ...row, price }))
  }
}
