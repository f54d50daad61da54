import { InvalidOptionError, type SingleFlightResult } from '@layercache/core'

/** Turns a handed-over result into text and back. The default is JSON. */
export interface SingleFlightSerializer {
  serialize(value: unknown): string
  deserialize(text: string): unknown
}

export const JSON_SERIALIZER: SingleFlightSerializer = {
  serialize: (value) => JSON.stringify(value),
  deserialize: (text) => JSON.parse(text),
}

export function readSerializerOption(value: unknown): SingleFlightSerializer {
  if (value === undefined) return JSON_SERIALIZER
  const candidate = value as Partial<SingleFlightSerializer> | null
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    typeof candidate.serialize !== 'function' ||
    typeof candidate.deserialize !== 'function'
  ) {
    throw new InvalidOptionError(
      'RedisSingleFlightCoordinator: serializer needs serialize() and deserialize()',
    )
  }
  return candidate as SingleFlightSerializer
}

// `undefined` has no JSON: it gets a marker of its own, every other value a marker in front of its text.
const UNDEFINED = 'u'
const VALUE = 'v'

/**
 * A result as stored for waiters, or undefined when it cannot be handed over (the serializer refused it,
 * or it is larger than `maxBytes`): waiters then load it themselves.
 */
export function encodeResult(
  value: unknown,
  serializer: SingleFlightSerializer,
  maxBytes: number,
): string | undefined {
  if (value === undefined) return UNDEFINED
  let text: unknown
  try {
    text = serializer.serialize(value)
  } catch {
    return undefined
  }
  // JSON.stringify answers undefined for functions and symbols.
  if (typeof text !== 'string') return undefined
  const payload = VALUE + text
  return Buffer.byteLength(payload) > maxBytes ? undefined : payload
}

/** The stored result, or undefined when there is none or it cannot be read. */
export function decodeResult(
  payload: string | null | undefined,
  serializer: SingleFlightSerializer,
): SingleFlightResult | undefined {
  if (payload === null || payload === undefined) return undefined
  if (payload === UNDEFINED) return { value: undefined }
  if (!payload.startsWith(VALUE)) return undefined
  try {
    return { value: serializer.deserialize(payload.slice(VALUE.length)) }
  } catch {
    return undefined
  }
}
