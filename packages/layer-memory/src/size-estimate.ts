/**
 * A quick upper-bound-ish estimate of the heap bytes a value occupies, for the layer's byte budget.
 * It walks the value once (cycle-safe); it is not exact and need not be: it keeps the bound honest
 * within a small factor without the cost of serialising.
 */
export function estimateBytes(value: unknown, seen: Set<object> = new Set()): number {
  switch (typeof value) {
    case 'string':
      return 16 + value.length * 2
    case 'number':
    case 'bigint':
      return 8
    case 'boolean':
    case 'undefined':
      return 4
    case 'object': {
      if (value === null) return 4
      if (seen.has(value)) return 0
      seen.add(value)
      if (ArrayBuffer.isView(value)) return 64 + value.byteLength
      if (value instanceof Map) {
        let size = 64
        for (const [k, v] of value) size += estimateBytes(k, seen) + estimateBytes(v, seen)
        return size
      }
      if (value instanceof Set) {
        let size = 64
        for (const v of value) size += estimateBytes(v, seen)
        return size
      }
      if (Array.isArray(value)) {
        let size = 32 + value.length * 8
        for (const v of value) size += estimateBytes(v, seen)
        return size
      }
      let size = 32
      for (const key of Object.keys(value)) {
        size += 8 + key.length * 2 + estimateBytes((value as Record<string, unknown>)[key], seen)
      }
      return size
    }
    default:
      return 16
  }
}
