import { InvalidOptionError, SerializationError } from '@layercache/core'
import { Packr } from 'msgpackr'

/**
 * Turns the stored envelope into bytes and back. `id` is one ASCII character written in front of
 * every stored value, so a reader can tell formats apart (and fail clearly on a mismatch).
 */
export interface Serializer {
  readonly id: string
  serialize(value: unknown): string | Buffer
  deserialize(data: Buffer): unknown
}

/**
 * JSON needs no marker of its own: the stored envelope is a JSON array, so the value's first byte is
 * already '[' (which no other serializer id may be). Reading it is then a plain JSON.parse of the reply.
 */
export const jsonSerializer: Serializer = {
  id: '[',
  serialize: (value) => JSON.stringify(value),
  deserialize: (data) => JSON.parse(data.toString('utf8')),
}

/**
 * Where `value` holds something JSON would not read back as it was given, described for an error
 * message ("value.items is a Map, …"); undefined when it round-trips. Plain objects (any realm, or no
 * prototype), arrays, strings, finite numbers, booleans and null do. Everything else is refused rather
 * than cached as two different values: memory would keep the Map, Redis would hand other instances `{}`.
 * Properties whose value is undefined are let through: JSON leaves them out, and reading one answers
 * undefined from either layer. Call it on a value without cycles (JSON.stringify refuses those first).
 */
export function jsonMismatch(value: unknown): string | undefined {
  const found = mismatchAt(value, false)
  return found === undefined ? undefined : `value${found.path} is ${found.what}, which JSON ${found.becomes}`
}

interface Mismatch {
  path: string
  readonly what: string
  readonly becomes: string
}

// The path is built only on the way back from a mismatch: a value that round-trips allocates nothing.
function mismatchAt(value: unknown, inArray: boolean): Mismatch | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined
    case 'number':
      return Number.isFinite(value) ? undefined : { path: '', what: String(value), becomes: 'stores as null' }
    case 'undefined':
      return inArray ? { path: '', what: 'undefined (or a hole)', becomes: 'stores as null' } : undefined
    case 'bigint':
      return { path: '', what: 'a bigint', becomes: 'cannot store' }
    case 'object':
      break
    default:
      return { path: '', what: `a ${typeof value}`, becomes: inArray ? 'stores as null' : 'leaves out' }
  }
  if (value === null) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = mismatchAt(value[i], true)
      if (found !== undefined) {
        found.path = `[${i}]${found.path}`
        return found
      }
    }
    return undefined
  }
  const proto = Object.getPrototypeOf(value) as object | null
  // Object.prototype of this realm or another (whose own prototype is null), or none at all.
  if (proto !== null && proto !== Object.prototype && Object.getPrototypeOf(proto) !== null) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name
    const what = typeof name === 'string' && name !== '' ? `a ${name}` : 'an object with a prototype'
    return { path: '', what, becomes: 'does not read back as one' }
  }
  for (const key in value) {
    const found = mismatchAt((value as Record<string, unknown>)[key], false)
    if (found !== undefined) {
      found.path = /^[A-Za-z_$][\w$]*$/.test(key)
        ? `.${key}${found.path}`
        : `[${JSON.stringify(key)}]${found.path}`
      return found
    }
  }
  return undefined
}

// Records are self-describing per message (no shared structures), so any instance can read any value.
const packr = new Packr({ moreTypes: true })

/** msgpackr: smaller and faster for large values; keeps Dates, Maps, Sets and binary data. */
export const msgpackSerializer: Serializer = {
  id: 'M',
  serialize: (value) => packr.pack(value),
  deserialize: (data) => packr.unpack(data),
}

/** Marker of a compressed value; the byte after it names the serializer of the inflated payload. */
export const COMPRESSED_MARKER = 'Z'

export function resolveSerializer(option: 'json' | 'msgpack' | Serializer | undefined): Serializer {
  if (option === undefined || option === 'json') return jsonSerializer
  if (option === 'msgpack') return msgpackSerializer
  if (
    typeof option !== 'object' ||
    option === null ||
    typeof option.serialize !== 'function' ||
    typeof option.deserialize !== 'function' ||
    typeof option.id !== 'string' ||
    !/^[A-Za-z0-9]$/.test(option.id) ||
    option.id === COMPRESSED_MARKER
  ) {
    throw new InvalidOptionError(
      "RedisLayer serializer: expected 'json', 'msgpack' or { id, serialize, deserialize } where id is " +
        `one letter or digit other than '${COMPRESSED_MARKER}'`,
    )
  }
  return option
}

export function serializeOrThrow(serializer: Serializer, value: unknown, key: string): Buffer | string {
  try {
    const out = serializer.serialize(value)
    if (typeof out !== 'string' && !Buffer.isBuffer(out))
      throw new Error('serializer returned neither string nor Buffer')
    return out
  } catch (error) {
    if (error instanceof SerializationError) throw error
    throw new SerializationError(
      `Cannot serialize value for key "${key}": ${(error as Error).message}`,
      error,
    )
  }
}
