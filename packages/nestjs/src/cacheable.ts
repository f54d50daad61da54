import {
  assertKey,
  assertKnownOptions,
  assertTags,
  assertTtl,
  FRESHNESS_OPTIONS,
  type GetOrSetOptions,
  InvalidOptionError,
} from '@layercache/core'
import { type AnyMethod, namespaceOf, replaceMethod } from './decorate'

/** What `@Cacheable` takes: how to name the entry, its tags, and getOrSet's options. */
export interface CacheableOptions<A extends unknown[] = unknown[]> extends Omit<GetOrSetOptions, 'tags'> {
  /**
   * The cache key of a call: a function of the method's arguments, or a constant for a method without
   * parameters. Default: `prefix` + `:` + the JSON of the arguments, as `stack.wrap` does.
   */
  readonly key?: string | ((...args: A) => string)
  /** The start of the default key. Default: `ClassName.methodName`. */
  readonly prefix?: string
  /** Tags of the cached result: a list, or a function of the method's arguments. */
  readonly tags?: readonly string[] | ((...args: A) => readonly string[])
  /** Cache in `stack.namespace(namespace)` (keys and tags are scoped to it). Default: the stack itself. */
  readonly namespace?: string
}
const OPTIONS = [
  'key',
  'prefix',
  'tags',
  'namespace',
  'ttl',
  'dependsOn',
  'onLayerError',
  ...FRESHNESS_OPTIONS,
]

/**
 * Caches an async method's result through the LayercacheModule's stack: `stack.getOrSet(key, () =>
 * method(...args), options)`. Concurrent calls with the same key run the method once (across every
 * instance with a `RedisSingleFlightCoordinator`); a thrown error reaches every waiter and caches nothing;
 * `undefined` is returned and not cached. Works on providers and controllers (with the route decorators in
 * either order); an object Nest did not create runs the plain method.
 *
 * ```ts
 * @Cacheable({ key: (id: number) => `product:${id}`, tags: (id: number) => [`product:${id}`], ttl: 60_000 })
 * async findProduct(id: number): Promise<Product> { ... }
 * ```
 */
export function Cacheable<A extends unknown[] = unknown[]>(
  options: CacheableOptions<A> = {},
): <M extends [...A, ...unknown[]], R>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<(...args: M) => Promise<R>>,
) => void {
  assertKnownOptions(options, OPTIONS, '@Cacheable')
  const { key, prefix, tags, namespace, ...loadOptions } = options
  if (key !== undefined && typeof key !== 'string' && typeof key !== 'function') {
    throw new InvalidOptionError('@Cacheable: key must be a string or a function of the arguments')
  }
  if (prefix !== undefined) assertKey(prefix, '@Cacheable prefix')
  if (tags !== undefined && !Array.isArray(tags) && typeof tags !== 'function') {
    throw new InvalidOptionError('@Cacheable: tags must be an array of tags or a function of the arguments')
  }
  if (namespace !== undefined) assertKey(namespace, 'namespace')
  if (Array.isArray(tags)) assertTags(tags)
  assertTtl(loadOptions.ttl)
  const view = namespaceOf(namespace)
  return (target, propertyKey, descriptor) => {
    replaceMethod('Cacheable', target, propertyKey, descriptor, (method: AnyMethod, name: string) => {
      if (typeof key === 'string' && method.length > 0) {
        throw new InvalidOptionError(
          `@Cacheable on ${name}: a constant key would answer every call with the first call's result; ` +
            'give key a function of the arguments',
        )
      }
      const start = prefix ?? name
      const keyOf: (args: A) => string =
        key === undefined
          ? (args) => `${start}:${JSON.stringify(args)}`
          : typeof key === 'string'
            ? () => key
            : (args) => key(...args)
      const tagsOf: (args: A) => readonly string[] | undefined =
        typeof tags === 'function' ? (args) => tags(...args) : () => tags
      return (stack, self, args) => {
        const callArgs = args as A
        let key: string
        let tagged: readonly string[] | undefined
        try {
          key = keyOf(callArgs)
          tagged = tagsOf(callArgs)
        } catch (error) {
          return Promise.reject(error) // an async method rejects, whatever its key function throws
        }
        return view(stack).getOrSet(
          key,
          () => method.apply(self, args),
          tagged === undefined ? loadOptions : { ...loadOptions, tags: tagged },
        )
      }
    })
  }
}
