import { assertKey } from '@layercache/core'

/** Injection token of the module's options (what `forRoot` was given or `forRootAsync` produced). */
export const LAYERCACHE_OPTIONS = Symbol('layercache:options')

/**
 * The token a namespace of the stack is provided under: `@Inject(getCacheNamespaceToken('products'))`, or
 * `@InjectCacheNamespace('products')`. `'products'` and `'products:'` name the same namespace, as in
 * `stack.namespace()`.
 */
export function getCacheNamespaceToken(name: string): string {
  const checked = assertKey(name, 'namespace')
  return `layercache:namespace:${checked.endsWith(':') ? checked.slice(0, -1) : checked}`
}
