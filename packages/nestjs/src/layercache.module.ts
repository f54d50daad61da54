import { assertKnownOptions, CacheStack, InvalidOptionError } from '@layercache/core'
import type {
  DynamicModule,
  FactoryProvider,
  InjectionToken,
  ModuleMetadata,
  OnModuleDestroy,
  OnModuleInit,
  OptionalFactoryDependency,
  Provider,
  Type,
} from '@nestjs/common'
import { DiscoveryModule, DiscoveryService } from '@nestjs/core'
import { bindClass, bindInstance, hasDecoratedMethods, unbindClass } from './binding'
import { getCacheNamespaceToken, LAYERCACHE_OPTIONS } from './tokens'

export interface LayercacheModuleOptions {
  /** The stack to provide: its layers, invalidation bus and single-flight coordinator, built by you. */
  readonly stack: CacheStack
  /**
   * Runs when the application shuts down (onModuleDestroy), after `stack.close()` (which closes the stack's
   * bus and coordinator): close what else you opened for it, e.g. `() => Promise.all([redis.quit(),
   * subscriber.quit()])`.
   * LayercacheModule is global, so its hook runs after every other module's: their own shutdown work can
   * still use the cache.
   */
  readonly onClose?: (stack: CacheStack) => void | Promise<void>
}
const OPTIONS = ['stack', 'onClose'] as const

/** Registration for `forRoot`: the options, and the namespaces to provide everywhere. */
export interface LayercacheModuleRootOptions extends LayercacheModuleOptions {
  /** Namespaces injectable everywhere with `@InjectCacheNamespace(name)`. */
  readonly namespaces?: readonly string[]
}

/** A class that makes the options, for `forRootAsync({ useClass })` / `useExisting`. */
export interface LayercacheOptionsFactory {
  createLayercacheOptions(): LayercacheModuleOptions | Promise<LayercacheModuleOptions>
}

export interface LayercacheModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Makes the options, with the providers named in `inject` (e.g. a ConfigService). */
  readonly useFactory?: (...args: never[]) => LayercacheModuleOptions | Promise<LayercacheModuleOptions>
  readonly inject?: (InjectionToken | OptionalFactoryDependency)[]
  readonly useClass?: Type<LayercacheOptionsFactory>
  readonly useExisting?: Type<LayercacheOptionsFactory>
  /** Namespaces injectable everywhere with `@InjectCacheNamespace(name)`. */
  readonly namespaces?: readonly string[]
}
const ASYNC_OPTIONS = ['imports', 'useFactory', 'inject', 'useClass', 'useExisting', 'namespaces'] as const

function checkedOptions(options: unknown): LayercacheModuleOptions {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('LayercacheModule expects options { stack, onClose? }')
  }
  assertKnownOptions(options, OPTIONS, 'LayercacheModule')
  const { stack, onClose } = options as LayercacheModuleOptions
  if (!(stack instanceof CacheStack)) {
    throw new InvalidOptionError(
      'LayercacheModule: stack must be a CacheStack (one copy of layercache per process: an ESM and a ' +
        'CommonJS copy are different classes)',
    )
  }
  if (onClose !== undefined && typeof onClose !== 'function') {
    throw new InvalidOptionError('LayercacheModule: onClose must be a function')
  }
  return options as LayercacheModuleOptions
}

function checkedNamespaces(namespaces: unknown): readonly string[] {
  if (namespaces === undefined) return []
  if (!Array.isArray(namespaces))
    throw new InvalidOptionError('LayercacheModule: namespaces must be an array')
  for (const name of namespaces) getCacheNamespaceToken(name) // validates
  return namespaces
}

function namespaceProviders(namespaces: readonly string[]): FactoryProvider[] {
  return namespaces.map((name) => ({
    provide: getCacheNamespaceToken(name),
    useFactory: (stack: CacheStack) => stack.namespace(name),
    inject: [CacheStack],
  }))
}

/**
 * Binds the decorated methods of every provider and controller to the stack when the module initialises
 * (before any other module's onModuleInit: the module is global), and closes the stack when it is destroyed
 * (after every other module's onModuleDestroy).
 */
class LayercacheLifecycle implements OnModuleInit, OnModuleDestroy {
  private readonly boundClasses: object[] = []

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly options: LayercacheModuleOptions,
  ) {}

  onModuleInit(): void {
    const stack = this.options.stack
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      if (wrapper.isDependencyTreeStatic() && !wrapper.isTransient) {
        // One object for the application, whichever way it was made (class, factory, value): bind it.
        const instance = wrapper.instance as unknown
        if (
          instance !== null &&
          typeof instance === 'object' &&
          hasDecoratedMethods(Object.getPrototypeOf(instance))
        )
          bindInstance(instance, stack)
        continue
      }
      // Request-scoped and transient objects are made later, one per request or injection: bind their
      // class (known for class providers; a factory's objects are of a class Nest cannot name).
      const prototype = (wrapper.metatype as { prototype?: object } | null)?.prototype
      if (prototype !== undefined && hasDecoratedMethods(prototype)) {
        bindClass(prototype, stack)
        this.boundClasses.push(prototype)
      }
    }
  }

  async onModuleDestroy(): Promise<void> {
    const stack = this.options.stack
    for (const prototype of this.boundClasses.splice(0)) unbindClass(prototype, stack)
    // Warmers stop, loads finish (or are abandoned after close()'s default bound), the bus and the
    // coordinator given to the stack close; the Redis clients stay for onClose.
    await stack.close()
    await this.options.onClose?.(stack)
  }
}

const LIFECYCLE = Symbol('layercache:lifecycle')

function rootModule(
  optionsProvider: Provider,
  namespaces: readonly string[],
  imports: DynamicModule['imports'],
) {
  const providers: Provider[] = [
    optionsProvider,
    {
      provide: CacheStack,
      useFactory: (options: LayercacheModuleOptions) => options.stack,
      inject: [LAYERCACHE_OPTIONS],
    },
    {
      provide: LIFECYCLE,
      useFactory: (discovery: DiscoveryService, options: LayercacheModuleOptions) =>
        new LayercacheLifecycle(discovery, options),
      inject: [DiscoveryService, LAYERCACHE_OPTIONS],
    },
    ...namespaceProviders(namespaces),
  ]
  return {
    module: LayercacheModule,
    global: true,
    imports: [DiscoveryModule, ...(imports ?? [])],
    providers,
    exports: [CacheStack, LAYERCACHE_OPTIONS, ...namespaces.map(getCacheNamespaceToken)],
  } satisfies DynamicModule
}

/**
 * Provides a CacheStack to a NestJS application: inject it with `@InjectCache()` (or by its class), its
 * namespaces with `@InjectCacheNamespace(name)`; `@Cacheable` and `@CacheInvalidate` methods use it. The
 * module is global; `forFeature` adds namespaces to one module. On shutdown the stack stops listening to
 * its bus and `onClose` runs.
 */
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module is a class (its identity is the module's)
export class LayercacheModule {
  /** Registers the stack (build it first; `forRootAsync` when it needs other providers). */
  static forRoot(options: LayercacheModuleRootOptions): DynamicModule {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('LayercacheModule.forRoot expects { stack, namespaces?, onClose? }')
    }
    const { namespaces, ...rest } = options
    const checked = checkedOptions(rest)
    return rootModule({ provide: LAYERCACHE_OPTIONS, useValue: checked }, checkedNamespaces(namespaces), [])
  }

  /**
   * Registers a stack made by a factory (`useFactory` with `inject`), a class (`useClass`) or an existing
   * provider (`useExisting`) implementing LayercacheOptionsFactory.
   */
  static forRootAsync(options: LayercacheModuleAsyncOptions): DynamicModule {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError(
        'LayercacheModule.forRootAsync expects { useFactory | useClass | useExisting }',
      )
    }
    assertKnownOptions(options, ASYNC_OPTIONS, 'LayercacheModule.forRootAsync')
    const ways = [options.useFactory, options.useClass, options.useExisting].filter(
      (way) => way !== undefined,
    )
    if (ways.length !== 1) {
      throw new InvalidOptionError(
        'LayercacheModule.forRootAsync needs exactly one of useFactory, useClass, useExisting',
      )
    }
    if (options.useFactory !== undefined && typeof options.useFactory !== 'function') {
      throw new InvalidOptionError('LayercacheModule.forRootAsync: useFactory must be a function')
    }
    const namespaces = checkedNamespaces(options.namespaces)
    const extra: Provider[] = []
    let optionsProvider: Provider
    if (options.useFactory !== undefined) {
      const factory = options.useFactory as (...args: unknown[]) => unknown
      optionsProvider = {
        provide: LAYERCACHE_OPTIONS,
        useFactory: async (...args: unknown[]) => checkedOptions(await factory(...args)),
        inject: options.inject ?? [],
      }
    } else {
      const factoryClass = (options.useClass ?? options.useExisting)!
      if (options.useClass !== undefined) extra.push({ provide: factoryClass, useClass: factoryClass })
      optionsProvider = {
        provide: LAYERCACHE_OPTIONS,
        useFactory: async (factory: LayercacheOptionsFactory) =>
          checkedOptions(await factory.createLayercacheOptions()),
        inject: [factoryClass],
      }
    }
    const root = rootModule(optionsProvider, namespaces, options.imports)
    return { ...root, providers: [...root.providers, ...extra] }
  }

  /** Provides `stack.namespace(name)` for each name to the importing module (`@InjectCacheNamespace`). */
  static forFeature(namespaces: readonly string[]): DynamicModule {
    const checked = checkedNamespaces(namespaces)
    return {
      module: LayercacheModule,
      providers: namespaceProviders(checked),
      exports: checked.map(getCacheNamespaceToken),
    }
  }
}
