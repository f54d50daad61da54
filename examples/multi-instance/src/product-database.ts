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
    await new Promise((resolve) => setTimeout(resolve, 20))
    const row = await this.redis.hget('shop:db:products', id)
    return row === null ? undefined : JSON.parse(row)
  }

  async updatePrice(id: string, price: number): Promise<void> {
    const row = await this.find(id)
    if (row === undefined) throw new Error(`no product ${id}`)
    await this.redis.hset('shop:db:products', id, JSON.stringify({ ...row, price }))
  }
}
