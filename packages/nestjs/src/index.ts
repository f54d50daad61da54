export {
  CacheInvalidate,
  type CacheInvalidateOptions,
  type FromArguments,
  InvalidationAfterCallError,
} from './cache-invalidate'
export { Cacheable, type CacheableOptions } from './cacheable'
export { InjectCache, InjectCacheNamespace } from './inject'
export {
  LayercacheModule,
  type LayercacheModuleAsyncOptions,
  type LayercacheModuleOptions,
  type LayercacheModuleRootOptions,
  type LayercacheOptionsFactory,
} from './layercache.module'
export { getCacheNamespaceToken, LAYERCACHE_OPTIONS } from './tokens'
