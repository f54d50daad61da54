import {
  assertKey,
  assertKnownOptions,
  assertOneOf,
  assertTags,
  type InvalidationPlan,
  InvalidOptionError,
  LayerCacheError,
  type TagMatchMode,
  validatePattern,
} from '@layercache/core'
import { type AnyMethod, namespaceOf, replaceMethod } from './decorate'

/** A list, or a function of the decorated method's arguments giving one. */
export type FromArguments<A extends unknown[]> = readonly string[] | ((...args: A) => readonly string[])

/** What `@CacheInvalidate` removes once the method resolved (see `CacheStack.invalidate`). */
export interface CacheInvalidateOptions<A extends unknown[] = unknown[]> {
  /** Keys to delete, with every entry that `dependsOn` them. */
  readonly keys?: FromArguments<A>
  readonly tags?: FromArguments<A>
  /** How `tags` combine: entries with `any` of them (default) or `all`. */
  readonly tagMode?: TagMatchMode
  readonly prefixes?: FromArguments<A>
  readonly patterns?: FromArguments<A>
  /** Invalidate in `stack.namespace(namespace)`. Default: the stack itself. */
  readonly namespace?: string
}
const OPTIONS = ['keys', 'tags', 'tagMode', 'prefixes', 'patterns', 'namespace']
const LISTS = ['keys', 'tags', 'prefixes', 'patterns'] as const
type List = (typeof LISTS)[number]

/** The checks `stack.invalidate` makes, made before the method runs: a bad plan must not follow a write. */
const CHECKS: Record<List, (values: readonly string[]) => void> = {
  keys: (keys) => {
    for (const key of keys) assertKey(key)
  },
  tags: (tags) => void assertTags(tags, Number.POSITIVE_INFINITY),
  prefixes: (prefixes) => {
    for (const prefix of prefixes) if (prefix !== '') assertKey(prefix, 'prefix')
  },
  patterns: (patterns) => {
    for (const pattern of patterns) validatePattern(pattern)
  },
}

function checkedList(list: List, value: unknown, where: string): readonly string[] {
  if (!Array.isArray(value)) throw new InvalidOptionError(`${where}: ${list} must be an array of strings`)
  CHECKS[list](value)
  return value
}

/**
 * The decorated method succeeded (whatever it changed is changed), but invalidating the cache after it
 * failed: entries it meant to remove may still be served. `result` is what the method returned.
 */
export class InvalidationAfterCallError<T = unknown> extends LayerCacheError {
  constructor(
    readonly method: string,
    readonly result: T,
    cause: unknown,
  ) {
    super(
      'INVALIDATION_AFTER_CALL',
      `${method} succeeded, but invalidating the cache after it failed: ${(cause as Error)?.message ?? cause}`,
      { cause },
    )
  }
}

/**
 * Invalidates after the decorated async method resolves (a write: update the database, then drop what it
 * made stale), through the LayercacheModule's stack, so the bus carries it to every instance. The keys,
 * tags, prefixes and patterns are worked out and checked before the method runs (a bad one rejects the call
 * and the method does not run); a method that throws invalidates nothing. If the invalidation fails, the
 * call rejects with InvalidationAfterCallError, which carries the method's result.
 *
 * ```ts
 * @CacheInvalidate({ tags: (id: number) => [`product:${id}`] })
 * async updatePrice(id: number, price: number): Promise<void> { ... }
 * ```
 */
export function CacheInvalidate<A extends unknown[] = unknown[]>(
  options: CacheInvalidateOptions<A>,
): <M extends [...A, ...unknown[]], R>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<(...args: M) => Promise<R>>,
) => void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('@CacheInvalidate expects { keys?, tags?, tagMode?, prefixes?, patterns? }')
  }
  assertKnownOptions(options, OPTIONS, '@CacheInvalidate')
  for (const list of LISTS) {
    const value = options[list]
    if (value !== undefined && !Array.isArray(value) && typeof value !== 'function') {
      throw new InvalidOptionError(
        `@CacheInvalidate: ${list} must be an array or a function of the arguments`,
      )
    }
  }
  if (LISTS.every((list) => options[list] === undefined)) {
    throw new InvalidOptionError('@CacheInvalidate needs keys, tags, prefixes or patterns')
  }
  for (const list of LISTS) {
    const value = options[list]
    if (Array.isArray(value)) checkedList(list, value, '@CacheInvalidate')
  }
  assertOneOf(options.tagMode, ['any', 'all'], 'tag match mode')
  if (options.namespace !== undefined) assertKey(options.namespace, 'namespace')
  const view = namespaceOf(options.namespace)
  const planOf = (args: A, name: string): InvalidationPlan => {
    const plan: Record<string, unknown> = {}
    for (const list of LISTS) {
      const value = options[list]
      if (value === undefined) continue
      plan[list] =
        typeof value === 'function' ? checkedList(list, value(...args), `@CacheInvalidate on ${name}`) : value
    }
    if (options.tagMode !== undefined) plan.tagMode = options.tagMode
    return plan as InvalidationPlan
  }
  return (target, propertyKey, descriptor) => {
    replaceMethod('CacheInvalidate', target, propertyKey, descriptor, (method: AnyMethod, name: string) => {
      return async (stack, self, args) => {
        const plan = planOf(args as A, name) // checked before the method runs: a refused plan changes nothing
        const result = await method.apply(self, args)
        try {
          await view(stack).invalidate(plan)
        } catch (error) {
          throw new InvalidationAfterCallError(name, result, error)
        }
        return result
      }
    })
  }
}
