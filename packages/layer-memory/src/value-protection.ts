import { InvalidValueError } from '@layercache/core'

/**
 * How a MemoryLayer keeps callers from corrupting cached values by mutating what they got back:
 * - `freeze` (default): a structured clone of the caller's value is deep-frozen once on write; every
 *   read returns that shared frozen object for free. Mutations throw in strict mode. Contents of Map,
 *   Set and typed arrays cannot be frozen and stay mutable: use `clone` for such values.
 * - `clone`: a structured clone on write and on every read. Full isolation, costs a copy per hit.
 * - `none`: values are stored and returned by reference. Fastest; a caller that mutates a result
 *   changes the cached value for everyone.
 */
export type ValueProtection = 'freeze' | 'clone' | 'none'

export function copyValue<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value
  try {
    return structuredClone(value)
  } catch (error) {
    throw new InvalidValueError(
      `Value cannot be copied into the memory layer (${(error as Error).message}); ` +
        "store plain data, or use protection: 'none'",
    )
  }
}

export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value) || ArrayBuffer.isView(value)) {
    return value
  }
  Object.freeze(value)
  for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
  return value
}
