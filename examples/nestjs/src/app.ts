import { KeyvLayercache } from '@layercache/keyv'
import { LayercacheModule } from '@layercache/nestjs'
import { CacheModule } from '@nestjs/cache-manager'
import { type INestApplication, Module } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { Redis } from 'ioredis'
import {
  CacheStack,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
} from 'layercache'
import { CatalogService, CategoriesController, ProductsController, SessionsController } from './catalog'
import { CatalogDb } from './catalog-db'

export interface CatalogAppOptions {
  /** Shown in the story's lines. */
  readonly name: string
  readonly redisUrl: string
  /** Every key and channel of the fleet starts with it. */
  readonly prefix: string
  readonly db: CatalogDb
  readonly port?: number
}

export interface CatalogApp {
  readonly name: string
  readonly url: string
  readonly app: INestApplication
  readonly stack: CacheStack
  /** Whether this instance's memory layer holds `key` (without asking Redis). */
  inMemory(key: string): boolean
  close(): Promise<void>
}

/**
 * The stack of one app instance: memory over the shared Redis, a signed bus (its own subscriber
 * connection) and the fleet-wide single-flight coordinator. `onClose` is what LayercacheModule runs on
 * shutdown, once the stack stopped listening: close the bus and the coordinator, then the connections.
 */
function buildStack({ redisUrl, prefix }: CatalogAppOptions) {
  const redis = new Redis(redisUrl)
  const subscriber = new Redis(redisUrl)
  const bus = new RedisInvalidationBus({
    publisher: redis,
    subscriber,
    channel: `${prefix}bus`,
    signingSecret: process.env.LAYERCACHE_BUS_SECRET ?? 'example secret, at least 16 chars',
  })
  const coordinator = new RedisSingleFlightCoordinator({ client: redis, prefix: `${prefix}sf:` })
  const memory = new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })
  const stack = new CacheStack(
    [memory, new RedisLayer({ client: redis, prefix })],
    // broadcastL1Invalidation: cache-manager code overwrites with `set`; the other instances drop their copy.
    { invalidationBus: bus, singleFlightCoordinator: coordinator, broadcastL1Invalidation: true },
  )
  const onClose = async () => {
    await bus.close()
    await coordinator.close()
    await Promise.all([redis.quit(), subscriber.quit()])
  }
  return { stack, memory, onClose, ready: bus.ready }
}

/** Starts one instance of the catalog service, listening on 127.0.0.1. */
export async function startCatalogApp(options: CatalogAppOptions): Promise<CatalogApp> {
  const { stack, memory, onClose, ready } = buildStack(options)

  @Module({
    imports: [
      LayercacheModule.forRoot({ stack, onClose }),
      // @nestjs/cache-manager, unchanged: its store is a namespace of the same stack.
      CacheModule.registerAsync({
        inject: [CacheStack],
        useFactory: (cache: CacheStack) => ({ stores: [new KeyvLayercache(cache.namespace('sessions'))] }),
      }),
    ],
    controllers: [ProductsController, CategoriesController, SessionsController],
    providers: [CatalogService, { provide: CatalogDb, useValue: options.db }],
  })
  class AppModule {}

  const app = await NestFactory.create(AppModule, { logger: ['error'] })
  await app.listen(options.port ?? 0, '127.0.0.1')
  await ready
  return {
    name: options.name,
    url: await app.getUrl(),
    app,
    stack,
    inMemory: (key) => memory.get(key) !== undefined,
    close: () => app.close(), // LayercacheModule stops the stack, then runs onClose
  }
}
