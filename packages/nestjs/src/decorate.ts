import { type CacheStack, InvalidOptionError } from '@layercache/core'
import { markDecorated, stackOf } from './binding'

// biome-ignore lint/suspicious/noExplicitAny: a method of any signature
export type AnyMethod = (...args: any[]) => unknown

/** `stack.namespace(name)` for each stack, made once: a view per call would cost an allocation per call. */
export function namespaceOf(name: string | undefined): (stack: CacheStack) => CacheStack {
  if (name === undefined) return (stack) => stack
  const views = new WeakMap<CacheStack, CacheStack>()
  return (stack) => {
    let view = views.get(stack)
    if (view === undefined) {
      view = stack.namespace(name)
      views.set(stack, view)
    }
    return view
  }
}

/**
 * Replaces the decorated method with `replacement(stack, original)`'s function, called with the stack the
 * object is bound to; an object no LayercacheModule bound runs the original method. Metadata other
 * decorators put on the original function (Nest's route decorators, applied before this one) moves to the
 * replacement, so the order of decorators does not matter.
 */
export function replaceMethod(
  decorator: string,
  target: object,
  propertyKey: string | symbol,
  descriptor: PropertyDescriptor,
  replacement: (
    original: AnyMethod,
    name: string,
  ) => (stack: CacheStack, self: unknown, args: unknown[]) => unknown,
): void {
  if (descriptor === undefined || (typeof propertyKey !== 'string' && typeof propertyKey !== 'symbol')) {
    // Called as a standard (TC39) decorator: (method, context). Nest's own decorators need the legacy kind too.
    throw new InvalidOptionError(
      `@${decorator} is a TypeScript legacy decorator, as NestJS's are: set "experimentalDecorators": true ` +
        'in tsconfig.json',
    )
  }
  if (typeof target === 'function') {
    throw new InvalidOptionError(
      `@${decorator} on ${target.name}.${String(propertyKey)}: it decorates instance methods, not static ones`,
    )
  }
  const original = descriptor.value as unknown
  const name = `${(target as { constructor?: { name?: string } }).constructor?.name ?? 'Object'}.${String(propertyKey)}`
  if (typeof original !== 'function') {
    throw new InvalidOptionError(`@${decorator} on ${name}: it decorates methods only`)
  }
  const method = original as AnyMethod
  const cached = replacement(method, name)
  const wrapper = function (this: unknown, ...args: unknown[]) {
    const stack = stackOf(this)
    return stack === undefined ? method.apply(this, args) : cached(stack, this, args)
  }
  Object.defineProperty(wrapper, 'name', { value: method.name })
  copyMetadata(method, wrapper)
  descriptor.value = wrapper
  markDecorated(target)
}

function copyMetadata(from: object, to: object): void {
  const reflect = Reflect as unknown as {
    getOwnMetadataKeys?(target: object): unknown[]
    getOwnMetadata?(key: unknown, target: object): unknown
    defineMetadata?(key: unknown, value: unknown, target: object): void
  }
  if (reflect.getOwnMetadataKeys === undefined) return
  for (const key of reflect.getOwnMetadataKeys(from)) {
    reflect.defineMetadata!(key, reflect.getOwnMetadata!(key, from), to)
  }
}
