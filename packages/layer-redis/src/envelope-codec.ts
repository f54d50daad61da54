import { promisify } from 'node:util'
import { deflateRaw, deflateRawSync, inflateRaw, inflateRawSync } from 'node:zlib'
import {
  assertPositiveInteger,
  type CacheEntry,
  CorruptEntriesError,
  CorruptEntryError,
  type CorruptReason,
  ENTRY_FORMAT_VERSION,
  InvalidOptionError,
  OversizedValueError,
  SerializationError,
} from '@layercache/core'
import {
  COMPRESSED_MARKER,
  jsonMismatch,
  jsonSerializer,
  msgpackSerializer,
  type Serializer,
  serializeOrThrow,
} from './serializer'

const deflateAsync = promisify(deflateRaw)
const inflateAsync = promisify(inflateRaw)
/** Below this, zlib runs inline: the thread-pool hop costs more than the work. Above, it runs off-loop. */
const INLINE_ZLIB_LIMIT = 64 * 1024
const COMPRESSED_CODE = COMPRESSED_MARKER.charCodeAt(0)

export const DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024
/** Redis's own limit on a string value. */
export const MAX_VALUE_BYTES_LIMIT = 512 * 1024 * 1024

/** The `maxValueBytes` option: the largest value written, and read (inflated size included). */
export function readMaxValueBytes(option: unknown, what: string): number {
  const bytes = assertPositiveInteger(option, what) ?? DEFAULT_MAX_VALUE_BYTES
  if (bytes > MAX_VALUE_BYTES_LIMIT) {
    throw new InvalidOptionError(
      `Invalid ${what} ${bytes}: at most ${MAX_VALUE_BYTES_LIMIT} (512 MiB, the largest string Redis stores)`,
    )
  }
  return bytes
}

export interface CompressionOptions {
  /** Compress serialised values of at least this many bytes. Default 1024. */
  readonly threshold?: number
  /** zlib level 1 (fast) … 9 (small). Default 6. */
  readonly level?: number
}

/**
 * Stored shape: [formatVersion, expiresAt, tags | null, value, meta?], behind a one-character format
 * marker (JSON's own '[' serves as its marker). `meta` holds the freshness fields, only when set:
 * f = freshUntil, c = createdAt, d = loadMs, n = negative cache (1: absent, 2: null), x = expired (1). Readers ignore elements they do not know, so
 * fields can be added without a format break.
 */
type StoredMeta = { f?: number; c?: number; d?: number; n?: 1 | 2; x?: 1 }
type StoredEnvelope =
  | [number, number, readonly string[] | null, unknown]
  | [number, number, readonly string[] | null, unknown, StoredMeta]

function metaOf(entry: CacheEntry): StoredMeta | undefined {
  if (
    entry.freshUntil === undefined &&
    entry.createdAt === undefined &&
    entry.absent === undefined &&
    entry.expired === undefined
  )
    return undefined
  const meta: StoredMeta = {}
  if (entry.freshUntil !== undefined) meta.f = entry.freshUntil
  if (entry.createdAt !== undefined) meta.c = entry.createdAt
  if (entry.loadMs !== undefined) meta.d = Math.round(entry.loadMs)
  if (entry.absent !== undefined) meta.n = entry.absent ? 1 : 2
  if (entry.expired === true) meta.x = 1
  return meta
}

export interface EncodedValue {
  /** Serialised envelope with its marker; compressed lazily at commit time when over the threshold. */
  readonly payload: string | Buffer
  readonly byteLength: number
}

function unfaithfulJson(key: string, mismatch: string): SerializationError {
  return new SerializationError(
    `Cannot store the value for key "${key}" as JSON: ${mismatch}. Store plain data, or use ` +
      "serializer: 'msgpack' (which keeps Dates, Maps, Sets, bigints and binary data)",
  )
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
  let body: string | Buffer
  try {
    body = serializeOrThrow(serializer, envelope, key)
  } catch (error) {
    // JSON.stringify names no path for a bigint ("Do not know how to serialize a BigInt"): find it. A
    // value with a bigint has no cycle JSON.stringify met first, but may have one further on.
    if (serializer === jsonSerializer && /BigInt/.test((error as Error).message)) {
      let mismatch: string | undefined
      try {
        mismatch = jsonMismatch(entry.value)
      } catch {
        mismatch = undefined
      }
      if (mismatch !== undefined) throw unfaithfulJson(key, mismatch)
    }
    throw error
  }
  if (serializer === jsonSerializer) {
    // After serialising: JSON.stringify has refused cycles, so the walk ends.
    const mismatch = jsonMismatch(entry.value)
    if (mismatch !== undefined) throw unfaithfulJson(key, mismatch)
  }
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

/**
 * The inflated size read inline: a legitimate value rarely inflates more than 64-fold, and a bomb that
 * would (zlib reaches 1000-fold) is cut off here after a millisecond and inflated again off the loop.
 */
const INLINE_INFLATE_OUTPUT = 1024 * 1024

function isTooLarge(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE'
}

function isWrongType(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('WRONGTYPE')
}

/**
 * Reads stored values back into entries, never doing more work than `maxValueBytes` allows: a stored
 * value over it is refused before parsing, and a compressed one is inflated with it as the output cap.
 * Anything that cannot be used (does not inflate or parse, is not an entry, is too large, or the key
 * holds another Redis type) is a CorruptEntryError. An envelope of a newer format than this version
 * reads is `undefined` (a miss, so a rolling upgrade never crashes readers).
 */
export class EntryDecoder {
  /** Strings at most this long cannot exceed `maxValueBytes` in UTF-8 (3 bytes per UTF-16 unit at most). */
  private readonly textSafeLength: number

  constructor(
    private readonly layer: string,
    private readonly serializers: ReadonlyMap<string, Serializer>,
    private readonly maxValueBytes: number,
  ) {
    this.textSafeLength = Math.floor(maxValueBytes / 3)
  }

  /** A JSON value read as a string (no Buffer round trip, no copy). */
  decodeText(text: string, key: string): CacheEntry | undefined {
    if (text.length > this.textSafeLength && Buffer.byteLength(text) > this.maxValueBytes) {
      throw this.tooLarge(key, Buffer.byteLength(text))
    }
    let envelope: unknown
    try {
      envelope = JSON.parse(text)
    } catch (error) {
      throw this.corrupt(key, 'unreadable', `not JSON: ${(error as Error).message}`, error)
    }
    return this.toEntry(envelope, key)
  }

  decode(data: Buffer, key: string): CacheEntry | undefined | Promise<CacheEntry | undefined> {
    if (data.length > this.maxValueBytes) throw this.tooLarge(key, data.length)
    return data.length > 0 && data[0] === COMPRESSED_CODE
      ? this.inflate(data, key)
      : this.decodePlain(data, key)
  }

  /**
   * Decodes a getMany's replies (null: no value). Corrupt entries do not fail the others: they are
   * answered as undefined and reported together in a CorruptEntriesError carrying every answer.
   */
  async decodeMany(
    replies: readonly (Buffer | null)[],
    keys: readonly string[],
  ): Promise<(CacheEntry | undefined)[]> {
    let corrupt: (CorruptEntryError | undefined)[] | undefined
    const settle = (error: unknown, i: number): undefined => {
      if (!(error instanceof CorruptEntryError)) throw error
      corrupt ??= new Array<CorruptEntryError | undefined>(replies.length).fill(undefined)
      corrupt[i] = error
      return undefined
    }
    const entries = await Promise.all(
      replies.map((data, i) => {
        if (data === null) return undefined
        try {
          const entry = this.decode(data, keys[i]!)
          return entry instanceof Promise ? entry.catch((error: unknown) => settle(error, i)) : entry
        } catch (error) {
          return settle(error, i)
        }
      }),
    )
    if (corrupt !== undefined) throw new CorruptEntriesError(this.layer, entries, corrupt)
    return entries
  }

  /** A read of `key` refused by Redis because the key holds another type: a corrupt entry, not a failure. */
  wrongType(key: string, error: unknown): CorruptEntryError | undefined {
    return isWrongType(error) ? this.corrupt(key, 'wrong-type', (error as Error).message, error) : undefined
  }

  private inflate(data: Buffer, key: string): CacheEntry | undefined | Promise<CacheEntry | undefined> {
    const body = data.subarray(1)
    if (body.length <= INLINE_ZLIB_LIMIT / 4) {
      let out: Buffer | undefined
      try {
        out = inflateRawSync(body, { maxOutputLength: Math.min(this.maxValueBytes, INLINE_INFLATE_OUTPUT) })
      } catch (error) {
        // Over the inline bound but perhaps under the cap: inflated again below, off the event loop.
        if (!isTooLarge(error) || this.maxValueBytes <= INLINE_INFLATE_OUTPUT)
          throw this.notInflated(key, error)
      }
      if (out !== undefined) return this.decodePlain(out, key)
    }
    return inflateAsync(body, { maxOutputLength: this.maxValueBytes }).then(
      (out) => this.decodePlain(out, key),
      (error: unknown) => {
        throw this.notInflated(key, error)
      },
    )
  }

  /** An uncompressed value: the marker picks the serializer (a compressed one inside is not followed). */
  private decodePlain(data: Buffer, key: string): CacheEntry | undefined {
    const marker = data.length > 0 ? String.fromCharCode(data[0]!) : ''
    const serializer = this.serializers.get(marker)
    if (serializer === undefined) {
      throw this.corrupt(
        key,
        'unreadable',
        `format marker ${JSON.stringify(marker)} that no configured serializer reads`,
      )
    }
    let envelope: unknown
    try {
      envelope = serializer.deserialize(serializer === jsonSerializer ? data : data.subarray(1))
    } catch (error) {
      throw this.corrupt(key, 'unreadable', `does not deserialize: ${(error as Error).message}`, error)
    }
    return this.toEntry(envelope, key)
  }

  private toEntry(envelope: unknown, key: string): CacheEntry | undefined {
    const entry = envelopeToEntry(envelope)
    if (entry === null) throw this.corrupt(key, 'unreadable', 'not a layercache entry')
    return entry
  }

  private notInflated(key: string, error: unknown): CorruptEntryError {
    return isTooLarge(error)
      ? this.corrupt(key, 'too-large', `inflates past maxValueBytes (${this.maxValueBytes} bytes)`, error)
      : this.corrupt(
          key,
          'unreadable',
          `marked compressed but does not inflate: ${(error as Error).message}`,
          error,
        )
  }

  private tooLarge(key: string, bytes: number): CorruptEntryError {
    return this.corrupt(key, 'too-large', `${bytes} bytes stored, over maxValueBytes (${this.maxValueBytes})`)
  }

  private corrupt(key: string, reason: CorruptReason, detail: string, cause?: unknown): CorruptEntryError {
    return new CorruptEntryError(this.layer, key, reason, detail, cause)
  }
}

/**
 * Decodes one stored value (`key` names it in errors) with the JSON, msgpack or given serializers, read
 * as a RedisLayer named "redis" with `maxValueBytes` would. See EntryDecoder.
 */
export function decodeStored(
  data: Buffer,
  serializers: ReadonlyMap<string, Serializer>,
  key: string,
  maxValueBytes = DEFAULT_MAX_VALUE_BYTES,
): CacheEntry | undefined | Promise<CacheEntry | undefined> {
  return new EntryDecoder('redis', serializers, maxValueBytes).decode(data, key)
}

/** How many leading bytes of a stored value looksLikeEntry needs. */
export const ENTRY_HEAD_BYTES = 32

/** A JSON envelope starts `[<format version>,<expiresAt>,<tags: null or an array>`. */
const JSON_HEAD = /^\[\d+,-?[\d.e+]+,(null|\[)/

/**
 * Whether a Redis string whose first ENTRY_HEAD_BYTES bytes are `head` looks like a value a RedisLayer
 * wrote, for tools that meet keys by SCAN (the CLI's stats without a key index): a JSON envelope, a
 * msgpack one (marker, then a 4- or 5-element array), or a compressed one (the marker alone: what
 * follows is deflated). A value of a custom serializer is not recognised. A heuristic: another
 * application's string can look like one, but a counter, a JSON document or plain text does not.
 */
export function looksLikeEntry(head: Buffer): boolean {
  const marker = head.length > 0 ? String.fromCharCode(head[0]!) : ''
  if (marker === jsonSerializer.id) return JSON_HEAD.test(head.toString('latin1'))
  if (marker === msgpackSerializer.id) return head[1] === 0x94 || head[1] === 0x95
  return marker === COMPRESSED_MARKER && head.length > 1
}

/** The entry an envelope holds; undefined for a newer format, null when it is not an envelope at all. */
function envelopeToEntry(envelope: unknown): CacheEntry | undefined | null {
  if (!Array.isArray(envelope) || typeof envelope[0] !== 'number' || typeof envelope[1] !== 'number') {
    return null
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
    expired: meta.x === 1 ? true : undefined,
  }
}
