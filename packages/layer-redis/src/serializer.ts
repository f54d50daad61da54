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
