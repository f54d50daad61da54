import { CacheClosedError, CacheStack, InvalidKeyError, InvalidOptionError } from '@layercache/core'
import { Injectable, Module, type OnModuleDestroy } from '@nestjs/common'
import { Test } from '@nestjs/testing'
import { describe, expect, it } from 'vitest'
import {
  getCacheNamespaceToken,
  InjectCache,
  InjectCacheNamespace,
  LayercacheModule,
  type LayercacheModuleOptions,
  type LayercacheOptionsFactory,
} from '../src'
import { useFleet } from './support/fleet'

const { fleet } = useFleet()

// Every injection names its token: vitest (like tsx and esbuild) emits no decorator metadata, and these
// classes are injected all the same.
@Injectable()
class Catalog {
  constructor(
    @InjectCache() readonly cache: CacheStack,
    @InjectCacheNamespace('products') readonly products: CacheStack,
  ) {}
}

@Injectable()
class Orders {
  constructor(@InjectCacheNamespace('orders:') readonly orders: CacheStack) {}
}

@Module({ imports: [LayercacheModule.forFeature(['orders'])], providers: [Orders], exports: [Orders] })
class OrdersModule {}

describe('LayercacheModule', () => {
  it('forRoot provides the stack (by its class and @InjectCache) and its namespaces', async () => {
    const [app] = await fleet(1)
    const moduleRef = await Test.createTestingModule({
      imports: [LayercacheModule.forRoot({ stack: app!.stack, namespaces: ['products'] }), OrdersModule],
      providers: [Catalog],
    }).compile()
    const catalog = moduleRef.get(Catalog)
    expect(catalog.cache).toBe(app!.stack)
    expect(moduleRef.get(CacheStack)).toBe(app!.stack)
    expect(catalog.products.keyPrefix).toBe('products:')
    expect(moduleRef.get(getCacheNamespaceToken('products:'))).toBe(catalog.products)

    // A namespace is a view of the same stack: what one writes, the other reads under the full key.
    await catalog.products.set('1', { name: 'Anvil' })
    expect(await app!.stack.get('products:1')).toEqual({ name: 'Anvil' })
    // forFeature: the importing module gets its namespace ('orders' and 'orders:' are the same).
    const orders = moduleRef.get(Orders, { strict: false })
    expect(orders.orders.keyPrefix).toBe('orders:')
    await moduleRef.close()
  })

  it('forRootAsync builds the options with injected providers (useFactory)', async () => {
    const [app] = await fleet(1)
    @Module({ providers: [{ provide: 'STACKS', useValue: { main: app!.stack } }], exports: ['STACKS'] })
    class ConfigModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        LayercacheModule.forRootAsync({
          imports: [ConfigModule],
          inject: ['STACKS'],
          useFactory: async (stacks: { main: CacheStack }) => ({ stack: stacks.main }),
          namespaces: ['products'],
        }),
      ],
      providers: [Catalog],
    }).compile()
    expect(moduleRef.get(Catalog).cache).toBe(app!.stack)
    expect(moduleRef.get(Catalog).products.keyPrefix).toBe('products:')
    await moduleRef.close()
  })

  it('forRootAsync takes a class making the options (useClass, useExisting)', async () => {
    const [app] = await fleet(1)
    const made: string[] = []
    @Injectable()
    class CacheConfig implements LayercacheOptionsFactory {
      createLayercacheOptions(): LayercacheModuleOptions {
        made.push('options')
        return { stack: app!.stack }
      }
    }
    const byClass = await Test.createTestingModule({
      imports: [LayercacheModule.forRootAsync({ useClass: CacheConfig })],
    }).compile()
    expect(byClass.get(CacheStack)).toBe(app!.stack)
    await byClass.close()

    @Module({ providers: [CacheConfig], exports: [CacheConfig] })
    class ConfigModule {}
    const byExisting = await Test.createTestingModule({
      imports: [LayercacheModule.forRootAsync({ imports: [ConfigModule], useExisting: CacheConfig })],
    }).compile()
    expect(byExisting.get(CacheStack)).toBe(app!.stack)
    await byExisting.close()
    expect(made).toEqual(['options', 'options'])
  })

  it('on shutdown, after every other module’s onModuleDestroy, closes the stack and runs onClose', async () => {
    const [a, b] = await fleet(2)
    const order: string[] = []
    @Injectable()
    class Reporter implements OnModuleDestroy {
      constructor(@InjectCache() private readonly cache: CacheStack) {}
      async onModuleDestroy() {
        // Shutdown work of the app's own modules still has the cache.
        await this.cache.set('last-words', 'goodbye')
        order.push('app module destroyed')
      }
    }
    @Module({ providers: [Reporter] })
    class ReportingModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        LayercacheModule.forRoot({
          stack: b!.stack,
          onClose: async (stack) => {
            order.push(stack === b!.stack ? 'onClose with the stack' : 'onClose with another stack')
          },
        }),
        ReportingModule,
      ],
    }).compile()
    await moduleRef.init()

    await a!.stack.set('price:1', 249)
    expect(await b!.stack.get('price:1')).toBe(249) // now in B's memory
    await moduleRef.close()
    expect(order).toEqual(['app module destroyed', 'onClose with the stack'])
    expect(await a!.stack.get('last-words')).toBe('goodbye')

    // B's stack is closed (and its bus with it); A carries on.
    await expect(b!.stack.get('price:1')).rejects.toThrow(CacheClosedError)
    await expect(b!.bus.publish([{ keys: ['x'] }])).rejects.toThrow(/closed/)
    await a!.stack.delete('price:1')
    expect(await a!.stack.get('price:1')).toBeUndefined()
  })
})

describe('LayercacheModule refuses bad options', () => {
  it('forRoot: a missing stack, something else, unknown options, a bad onClose or namespace', async () => {
    const [app] = await fleet(1)
    expect(() => LayercacheModule.forRoot({} as never)).toThrow(InvalidOptionError)
    expect(() => LayercacheModule.forRoot({ stack: {} } as never)).toThrow(/stack must be a CacheStack/)
    expect(() => LayercacheModule.forRoot({ stack: app!.stack, ttl: 5 } as never)).toThrow(InvalidOptionError)
    expect(() => LayercacheModule.forRoot({ stack: app!.stack, onClose: 'quit' } as never)).toThrow(
      /onClose must be a function/,
    )
    expect(() => LayercacheModule.forRoot({ stack: app!.stack, namespaces: ['~internal'] })).toThrow(
      InvalidKeyError,
    )
    expect(() => LayercacheModule.forRoot({ stack: app!.stack, namespaces: 'products' } as never)).toThrow(
      /namespaces must be an array/,
    )
    expect(() => LayercacheModule.forFeature(['bad\nname'])).toThrow(InvalidKeyError)
    expect(() => LayercacheModule.forRoot(undefined as never)).toThrow(InvalidOptionError)
  })

  it('forRootAsync: not exactly one way to make the options, or a factory making bad ones', async () => {
    const [app] = await fleet(1)
    expect(() => LayercacheModule.forRootAsync({})).toThrow(
      /exactly one of useFactory, useClass, useExisting/,
    )
    class Factory implements LayercacheOptionsFactory {
      createLayercacheOptions() {
        return { stack: app!.stack }
      }
    }
    expect(() =>
      LayercacheModule.forRootAsync({ useFactory: () => ({ stack: app!.stack }), useClass: Factory }),
    ).toThrow(InvalidOptionError)
    expect(() =>
      LayercacheModule.forRootAsync({ useFactory: () => ({ stack: app!.stack }), ttl: 1 } as never),
    ).toThrow(InvalidOptionError)
    const compiling = Test.createTestingModule({
      imports: [
        LayercacheModule.forRootAsync({ useFactory: () => ({ stack: 'redis://localhost' }) as never }),
      ],
    }).compile()
    await expect(compiling).rejects.toBeInstanceOf(InvalidOptionError)
  })
})
