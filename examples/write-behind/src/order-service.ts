import type { Redis } from 'ioredis'
import { type CacheLayer, CacheStack, MemoryLayer, RedisLayer, WriteBehind } from 'layercache'
import type { Order, OrderStatus, OrdersDb } from './orders-db'

const CACHE_TTL_MS = 3_600_000

export interface OrderServiceOptions {
  /** This instance's name; order ids start with it. */
  readonly name: string
  readonly client: Redis
  readonly db: OrdersDb
  /** The write-behind queue every instance of the service shares. */
  readonly queue: string
  /** The cache's Redis prefix, shared by every instance. */
  readonly cachePrefix: string
  /** Keep a memory layer in front of Redis (default true). */
  readonly memory?: boolean
}

/** Refused once shutdown began: the caller should answer 503 and let the client retry elsewhere. */
export class ServiceStoppingError extends Error {
  override readonly name = 'ServiceStoppingError'
  constructor(service: string) {
    super(`${service} is shutting down`)
  }
}

/**
 * One instance of the order service. Writes are queued (durable once Redis has them) and cached at
 * once, so the order page is served from the cache before PostgreSQL has the row; this instance's
 * consumer (and every other instance's) writes the queue to PostgreSQL in batches.
 */
export class OrderService {
  readonly name: string
  readonly cache: CacheStack
  readonly writes: WriteBehind<Order>
  private readonly db: OrdersDb
  private accepting = true
  private placed = 0

  constructor(options: OrderServiceOptions) {
    this.name = options.name
    this.db = options.db
    const layers: CacheLayer[] = [
      ...(options.memory === false ? [] : [new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })]),
      new RedisLayer({ client: options.client, prefix: options.cachePrefix, ttl: CACHE_TTL_MS }),
    ]
    this.cache = new CacheStack(layers, { ttl: CACHE_TTL_MS })
    this.writes = new WriteBehind<Order>({
      cache: this.cache,
      client: options.client,
      queue: options.queue,
      writer: options.db.writeBatch,
      batchSize: 100,
      pollIntervalMs: 20,
      retryDelayMs: 50,
      maxRetryDelayMs: 1_000,
      maxAttempts: 8,
      claimAfterMs: 10_000,
    }).start()
  }

  async placeOrder(customer: string, totalCents: number): Promise<Order> {
    this.assertAccepting()
    const order: Order = { id: `${this.name}-${++this.placed}`, customer, totalCents, status: 'pending' }
    await this.writes.write(`order:${order.id}`, order)
    return order
  }

  async setStatus(id: string, status: OrderStatus): Promise<Order> {
    this.assertAccepting()
    const current = await this.getOrder(id)
    if (current === undefined) throw new Error(`no order ${id}`)
    const order: Order = { ...current, status }
    await this.writes.write(`order:${id}`, order)
    return order
  }

  /** From the cache; PostgreSQL only on a miss (e.g. an order written long ago and evicted since). */
  getOrder(id: string): Promise<Order | undefined> {
    return this.cache.getOrSet(`order:${id}`, () => this.db.find(id))
  }

  /**
   * What the SIGTERM handler runs: refuse new writes, write everything queued to PostgreSQL, stop the
   * consumer. If the queue cannot be drained in time (PostgreSQL down), the consumer is stopped anyway:
   * the entries stay in Redis and another instance (or the next start) writes them.
   */
  async shutdown(timeoutMs = 10_000): Promise<void> {
    this.accepting = false
    try {
      await this.writes.close({ timeoutMs })
    } catch (error) {
      await this.writes.close({ drain: false })
      throw error
    }
  }

  private assertAccepting(): void {
    if (!this.accepting) throw new ServiceStoppingError(this.name)
  }
}
