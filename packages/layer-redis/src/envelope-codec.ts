import { promisify } from 'node:util'
import { deflateRaw, deflateRawSync, inflateRaw, inflateRawSync } from 'node:zlib'
import {
  type CacheEntry,
  ENTRY_FORMAT_VERSION,
  OversizedValueError,
  SerializationError,
} from '@layercache/core'
import { COMPRESSED_MARKER, jsonSerializer, type Serializer, serializeOrThrow } from './serializer'

const deflateAsync = promisify(deflateRaw)
const inflateAsync = promisify(inflateRaw)
/** Below this, zlib runs inline: the thread-pool hop costs more than the work. Above, it runs off-loop. */
const INLINE_ZLIB_LIMIT = 64 * 1024

export interface CompressionOptions {
  /** Compress serialised values of at least this many bytes. Default 1024. */
  readonly threshold?: number
  /** zlib level 1 (fast) … 9 (small). Default 6. */
  readonly level?: number
}

/**
 * Stored shape: [formatVersion, expiresAt, tags | null, value, meta?], behind a one-character format
 * marker (JSON's own '[' serves as its marker). `meta` holds the freshness fields, only when set:
 * f = freshUntil, c = createdAt, d = loadMs, n = negative cache (1: absent, 2: null). Readers ignore elements they do not know, so
 * fields can be added without a format break.
 */
type StoredMeta = { f?: number; c?: number; d?: number; n?: 1 | 2 }
type StoredEnvelope =
  | [number, number, readonly string[] | null, unknown]
  | [number, number, readonly string[] | null, unknown, StoredMeta]

function metaOf(entry: CacheEntry): StoredMeta | undefined {
  if (entry.freshUntil === undefined && entry.createdAt === undefined && entry.absent === undefined)
    return undefined
  const meta: StoredMeta = {}
  if (entry.freshUntil !== undefined) meta.f = entry.freshUntil
  if (entry.createdAt !== undefined) meta.c = entry.createdAt
  if (entry.loadMs !== undefined) meta.d = Math.round(entry.loadMs)
  if (entry.absent !== undefined) meta.n = entry.absent ? 1 : 2
  return meta
}

export interface EncodedValue {
  /** Serialised envelope with its marker; compressed lazily at commit time when over the threshold. */
  readonly payload: string | Buffer
  readonly byteLength: number
}

/** Phase one: serialise and size-check synchronously (bad input throws here, before any I/O). */
export function encodeEntry(
  serializer: Serializer,
  entry: CacheEntry,
  expiresAt: number,
  key: string,
  maxValueBytes: number,
): EncodedValue {
  const meta = metaOf(entry)
  const envelope: StoredEnvelope =
    meta === undefined
      ? [ENTRY_FORMAT_VERSION, expiresAt, entry.tags ?? null, entry.value]
      : [ENTRY_FORMAT_VERSION, expiresAt, entry.tags ?? null, entry.value, meta]
  const body = serializeOrThrow(serializer, envelope, key)
  const payload =
    serializer === jsonSerializer
      ? body
      : typeof body === 'string'
        ? serializer.id + body
        : Buffer.concat([Buffer.from(serializer.id), body])
  const byteLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length
  if (byteLength > maxValueBytes) {
    throw new OversizedValueError(
      `Value for key "${key}" is ${byteLength} bytes serialised; the Redis layer accepts at most ${maxValueBytes}`,
    )
  }
  return { payload, byteLength }
}

export async function compressIfLarge(
  encoded: EncodedValue,
  compression: Required<CompressionOptions> | undefined,
): Promise<string | Buffer> {
  if (compression === undefined || encoded.byteLength < compression.threshold) return encoded.payload
  const raw = typeof encoded.payload === 'string' ? Buffer.from(encoded.payload) : encoded.payload
  const options = { level: compression.level }
  const deflated =
    raw.length <= INLINE_ZLIB_LIMIT ? deflateRawSync(raw, options) : await deflateAsync(raw, options)
  return Buffer.concat([Buffer.from(COMPRESSED_MARKER), deflated])
}

function inflated(data: Buffer): Buffer | Promise<Buffer> {
  const body = data.subarray(1)
  return body.length <= INLINE_ZLIB_LIMIT / 4 ? inflateRawSync(body) : inflateAsync(body)
}

/**
 * Decodes a stored value into an entry. Returns `undefined` for an envelope of a newer format this
 * version cannot read (treated as a miss, so a rolling upgrade never crashes readers).
 */
export function decodeStored(
  data: Buffer,
  serializers: ReadonlyMap<string, Serializer>,
  key: string,
): CacheEntry | undefined | Promise<CacheEntry | undefined> {
  if (data.length > 0 && data[0] === COMPRESSED_MARKER.charCodeAt(0)) {
    const out = inflated(data)
    return out instanceof Promise
      ? out.then((buf) => decodeStored(buf, serializers, key))
      : decodeStored(out, serializers, key)
  }
  const marker = data.length > 0 ? String.fromCharCode(data[0]!) : ''
  const serializer = serializers.get(marker)
  if (serializer === undefined) {
    throw new SerializationError(
      `Value at "${key}" has format marker "${marker}" that no configured serializer reads`,
    )
  }
  let envelope: unknown
  try {
    envelope = serializer.deserialize(serializer === jsonSerializer ? data : data.subarray(1))
  } catch (error) {
    throw new SerializationError(`Cannot deserialize value at "${key}": ${(error as Error).message}`, error)
  }
  return envelopeToEntry(envelope, key)
}

/** Fast path for JSON read as a string (no Buffer round trip, no copy). */
export function decodeJsonString(text: string, key: string): CacheEntry | undefined {
  let envelope: unknown
  try {
    envelope = JSON.parse(text)
  } catch (error) {
    throw new SerializationError(`Cannot deserialize value at "${key}": ${(error as Error).message}`, error)
  }
  return envelopeToEntry(envelope, key)
}

function envelopeToEntry(envelope: unknown, key: string): CacheEntry | undefined {
  if (!Array.isArray(envelope) || typeof envelope[0] !== 'number' || typeof envelope[1] !== 'number') {
    throw new SerializationError(`Value at "${key}" is not a layercache entry`)
  }
  if (envelope[0] > ENTRY_FORMAT_VERSION) return undefined
  const tags = envelope[2]
  const meta = envelope[4] as StoredMeta | undefined
  const entry = { value: envelope[3], expiresAt: envelope[1], tags: Array.isArray(tags) ? tags : undefined }
  if (meta === undefined || meta === null || typeof meta !== 'object') return entry
  return {
    ...entry,
    freshUntil: typeof meta.f === 'number' ? meta.f : undefined,
    createdAt: typeof meta.c === 'number' ? meta.c : undefined,
    loadMs: typeof meta.d === 'number' ? meta.d : undefined,
    absent: meta.n === 1 ? true : meta.n === 2 ? false : undefined,
  }
}
