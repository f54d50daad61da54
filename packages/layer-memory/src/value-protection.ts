import { InvalidValueError } from '@layercache/core'

/**
 * How a MemoryLayer keeps callers from corrupting cached values by mutating what they got back:
 * - `freeze` (default): a deep copy of the caller's value is deep-frozen once on write; every read returns
 *   that shared frozen object for free. Mutations throw in strict mode. A value holding a Date, Map, Set
 *   or binary data (whose contents freezing cannot reach) is handed out as a structured clone on each
 *   read instead, so no caller can change what the next one gets.
 * - `clone`: a deep copy on write and on every read. Full isolation, costs a copy per hit.
 * - `none`: values are stored and returned by reference. Fastest; a caller that mutates a result
 *   changes the cached value for everyone.
 */
export type ValueProtection = 'freeze' | 'clone' | 'none'

/** A deep copy of `value` that nothing outside the layer references (see copyPlainData for what it shares). */
export function copyValue<T>(value: T): T {
  return copied(value, false)
}

/**
 * copyValue of a value the layer keeps and never changes (an entry copied on every read): whether it
 * holds a Buffer is found on its first copy and remembered, so later copies skip that walk. A caller's
 * value may change between two writes, so copyValue never remembers.
 */
export function copyKept<T>(kept: T): T {
  return copied(kept, true)
}

function copied<T>(value: T, kept: boolean): T {
  if (value === null || typeof value !== 'object') return value
  try {
    const plain = copyPlainData(value, false, new Map())
    return (plain === NOT_PLAIN ? cloneStructured(value, kept) : plain) as T
  } catch (error) {
    throw notCopyable(error)
  }
}

/** A deep-frozen deep copy of `value`, and whether freezing sealed all of it (see deepFreeze). */
export function frozenCopy(value: unknown): { readonly value: unknown; readonly sealed: boolean } {
  if (value === null || typeof value !== 'object') return { value, sealed: true }
  let cloned: unknown
  try {
    // Plain data is frozen as it is copied, in one walk, and nothing in it escapes freezing.
    const plain = copyPlainData(value, true, new Map())
    if (plain !== NOT_PLAIN) return { value: plain, sealed: true }
    cloned = cloneStructured(value, false)
  } catch (error) {
    throw notCopyable(error)
  }
  return { value: cloned, sealed: deepFreeze(cloned) }
}

/**
 * structuredClone, except that a Buffer stays a Buffer: structuredClone hands back a plain Uint8Array,
 * while the Redis copy of the value (msgpack) reads back as a Buffer, and `buf.toString()` would then
 * answer the bytes as text from Redis but as a list of numbers from memory.
 */
function cloneStructured<T>(value: T, kept: boolean): T {
  const copy = structuredClone(value)
  if (kept && withoutBuffers.has(value as object)) return copy
  const walk: Walk = { seen: new Set(), buffers: false }
  const fixed = rebuffered(value, copy, walk) as T
  if (kept && !walk.buffers) withoutBuffers.add(value as object)
  return fixed
}

/** Kept values (see copyKept) found to hold no Buffer. */
const withoutBuffers = new WeakSet<object>()

interface Walk {
  /** Containers already fixed (shared, or a cycle). */
  readonly seen: Set<object>
  /** Whether a Buffer was met. */
  buffers: boolean
}

/**
 * `copy` (the structured clone of `original`) with each Buffer of `original` a Buffer again, over the
 * same bytes. Walks both in step, fixing containers in place; a container met twice (shared, or a
 * cycle) is one container in the clone too, fixed the first time.
 */
function rebuffered(original: unknown, copy: unknown, walk: Walk): unknown {
  if (original === null || typeof original !== 'object') return copy
  if (Buffer.isBuffer(original)) {
    walk.buffers = true
    const view = copy as Uint8Array
    return Buffer.from(view.buffer, view.byteOffset, view.byteLength)
  }
  const seen = walk.seen
  if (seen.has(original)) return copy
  // A Date, a typed array or another view: nothing inside to fix (a Map or Set is walked below).
  if (hasInternalState(original) && !(original instanceof Map) && !(original instanceof Set)) return copy
  seen.add(original)
  if (original instanceof Map) {
    const copied = copy as Map<unknown, unknown>
    const originals = [...original]
    let changed = false
    const entries = [...copied].map(([key, part], i): [unknown, unknown] => {
      const fixedKey = rebuffered(originals[i]![0], key, walk)
      const fixedPart = rebuffered(originals[i]![1], part, walk)
      if (fixedKey !== key || fixedPart !== part) changed = true
      return [fixedKey, fixedPart]
    })
    if (changed) {
      copied.clear()
      for (const [key, part] of entries) copied.set(key, part)
    }
    return copy
  }
  if (original instanceof Set) {
    const copied = copy as Set<unknown>
    const before = [...original]
    const members = [...copied]
    const after = members.map((member, i) => rebuffered(before[i], member, walk))
    if (after.some((member, i) => member !== members[i])) {
      copied.clear()
      for (const member of after) copied.add(member)
    }
    return copy
  }
  for (const key of Object.keys(original)) {
    const part = (copy as Record<string, unknown>)[key]
    const fixed = rebuffered((original as Record<string, unknown>)[key], part, walk)
    if (fixed !== part) (copy as Record<string, unknown>)[key] = fixed
  }
  return copy
}

function notCopyable(error: unknown): InvalidValueError {
  return new InvalidValueError(
    `Value cannot be copied into the memory layer (${(error as Error).message}); ` +
      "store plain data, or use protection: 'none'",
  )
}

const NOT_PLAIN: unique symbol = Symbol('not plain data')

/**
 * A deep copy of plain data: objects whose prototype is Object.prototype and arrays without holes, down
 * to primitives. Strings and other primitives are shared, not copied (they are immutable): that makes it
 * several times faster than structuredClone and smaller, since a structured clone holds a second copy of
 * every string while the original lives. Otherwise it copies what structuredClone would: own enumerable
 * string-keyed properties (getters read once) and array elements; a part met twice stays one shared
 * part, cycles included. Array properties that are not elements are left out, as JSON leaves them out.
 *
 * Answers NOT_PLAIN as soon as it meets anything else (a Date, Map, class instance, function, a hole in
 * an array, ...): the caller then copies the whole value with structuredClone, which copies what it can
 * (sparse arrays without walking their length) and refuses the rest.
 */
function copyPlainData(value: object, freeze: boolean, copies: Map<object, unknown>): unknown {
  const known = copies.get(value)
  if (known !== undefined) return known
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto === Array.prototype && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!(i in value)) return NOT_PLAIN
    const array = value.slice()
    copies.set(value, array)
    for (let i = 0; i < array.length; i++) {
      const part = copyPart(array[i], freeze, copies)
      if (part === NOT_PLAIN) return NOT_PLAIN
      // Primitives come back as they were: not writing them keeps a copy-on-write element store shared.
      if (part !== array[i]) array[i] = part
    }
    return freeze ? Object.freeze(array) : array
  }
  if (proto !== Object.prototype) return NOT_PLAIN
  // Built by adding properties, not by spreading: a spread copy gets a V8 property layout of its own,
  // which freezing then duplicates (several hundred bytes per object); added properties share layouts.
  const object: Record<string, unknown> = {}
  copies.set(value, object)
  for (const key of Object.keys(value)) {
    const part = copyPart((value as Record<string, unknown>)[key], freeze, copies)
    if (part === NOT_PLAIN) return NOT_PLAIN
    // An own "__proto__" property (JSON.parse makes them) must stay a property, not become the prototype.
    if (key === '__proto__') {
      Object.defineProperty(object, key, {
        value: part,
        writable: true,
        enumerable: true,
        configurable: true,
      })
    } else {
      object[key] = part
    }
  }
  return freeze ? Object.freeze(object) : object
}

function copyPart(part: unknown, freeze: boolean, copies: Map<object, unknown>): unknown {
  if (typeof part === 'object') return part === null ? part : copyPlainData(part, freeze, copies)
  return typeof part === 'function' || typeof part === 'symbol' ? NOT_PLAIN : part
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
