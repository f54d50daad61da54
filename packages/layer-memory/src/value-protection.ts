import { InvalidValueError } from '@layercache/core'

/**
 * How a MemoryLayer keeps callers from corrupting cached values by mutating what they got back:
 * - `freeze` (default): a structured clone of the caller's value is deep-frozen once on write; every
 *   read returns that shared frozen object for free. Mutations throw in strict mode. A value holding a
 *   Date, Map, Set or binary data (whose contents freezing cannot reach) is handed out as a structured
 *   clone on each read instead, so no caller can change what the next one gets.
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

/**
 * Deep-freezes `value` (as structuredClone leaves it: plain objects, arrays and built-ins). Returns false
 * when part of it stays mutable after freezing: a Date (setTime), a Map or Set (their entries), an
 * ArrayBuffer or a view of one (their bytes), whose state lives in internal slots Object.freeze cannot
 * reach. The rest of the value is frozen either way.
 */
export function deepFreeze(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true
  if (hasInternalState(value)) return false
  // Already frozen: a part met before (shared, or a cycle); its own verdict was taken then.
  if (Object.isFrozen(value)) return true
  Object.freeze(value)
  let sealed = true
  for (const key of Object.keys(value)) {
    if (!deepFreeze((value as Record<string, unknown>)[key])) sealed = false
  }
  return sealed
}

function hasInternalState(value: object): boolean {
  return (
    value instanceof Date ||
    value instanceof Map ||
    value instanceof Set ||
    ArrayBuffer.isView(value) ||
    value instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer)
  )
}
