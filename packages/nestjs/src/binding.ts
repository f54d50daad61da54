import type { CacheStack } from '@layercache/core'

// Which stack the @Cacheable / @CacheInvalidate methods of an object use. LayercacheModule fills these when
// it initialises: each provider and controller instance Nest created once (the usual singletons), and the
// class of those it creates per request or per injection (request-scoped, transient), whose instances do
// not exist yet. Weak, so a closed application's objects are not kept.
const byInstance = new WeakMap<object, CacheStack>()
const byClass = new WeakMap<object, CacheStack>()
/** Prototypes that declare decorated methods: what the module looks for. */
const decorated = new WeakSet<object>()

/** Called by the decorators on the prototype they decorate. */
export function markDecorated(prototype: object): void {
  decorated.add(prototype)
}

/** Whether `prototype` or a prototype it inherits from has decorated methods. */
export function hasDecoratedMethods(prototype: object | null | undefined): boolean {
  for (let at = prototype; at != null && at !== Object.prototype; at = Object.getPrototypeOf(at)) {
    if (decorated.has(at)) return true
  }
  return false
}

export function bindInstance(instance: object, stack: CacheStack): void {
  byInstance.set(instance, stack)
}

export function bindClass(prototype: object, stack: CacheStack): void {
  byClass.set(prototype, stack)
}

/** Forgets a class binding if it is still `stack`'s (another application may have bound it since). */
export function unbindClass(prototype: object, stack: CacheStack): void {
  if (byClass.get(prototype) === stack) byClass.delete(prototype)
}

/**
 * The stack the decorated methods of `self` use, or undefined when no LayercacheModule bound it: an object
 * made outside Nest (a unit test's `new Service()`), whose decorated methods then run as plain methods.
 */
export function stackOf(self: unknown): CacheStack | undefined {
  if (self === null || (typeof self !== 'object' && typeof self !== 'function')) return undefined
  const own = byInstance.get(self)
  if (own !== undefined) return own
  for (let at = Object.getPrototypeOf(self); at != null; at = Object.getPrototypeOf(at)) {
    const stack = byClass.get(at)
    if (stack !== undefined) return stack
  }
  return undefined
}
