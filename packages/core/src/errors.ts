import type { CacheEntry } from './entry'

/** Base class of every error layercache throws on purpose; `code` is stable and safe to switch on. */
export class LayerCacheError extends Error {
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

export class InvalidKeyError extends LayerCacheError {
  constructor(message: string) {
    super('INVALID_KEY', message)
  }
}

export class InvalidTtlError extends LayerCacheError {
  constructor(message: string) {
    super('INVALID_TTL', message)
  }
}

export class InvalidOptionError extends LayerCacheError {
  constructor(message: string, code = 'INVALID_OPTION') {
    super(code, message)
  }
}

/**
 * A Redis client whose replies do not have the shapes layercache reads, refused when it is handed over
 * (see checkClientReplies): ioredis 6's `replyMapping: 'resp3'`, or `stringNumbers: true`. `option` is
 * the client option at fault (`redisOptions.` in front for a Cluster's). RESP3 on the wire with ioredis
 * 6's default `replyMapping: 'legacy'` is supported.
 */
export class UnsupportedClientError extends InvalidOptionError {
  readonly option: string

  constructor(message: string, option: string) {
    super(message, 'UNSUPPORTED_CLIENT')
    this.option = option
  }
}

/**
 * A call refused on purpose before it did anything: a destructive operation without its confirmation
 * token, or in production mode without the explicit production opt-in.
 */
export class InvalidOperationError extends LayerCacheError {
  constructor(message: string) {
    super('INVALID_OPERATION', message)
  }
}

export class InvalidValueError extends LayerCacheError {
  constructor(message: string) {
    super('INVALID_VALUE', message)
  }
}

export class OversizedValueError extends LayerCacheError {
  constructor(message: string) {
    super('VALUE_TOO_LARGE', message)
  }
}

export class SerializationError extends LayerCacheError {
  constructor(message: string, cause?: unknown) {
    super('SERIALIZATION', message, { cause })
  }
}

/** Why a stored entry could not be used: see CorruptEntryError. */
export type CorruptReason = 'unreadable' | 'too-large' | 'wrong-type'

/**
 * A stored entry a layer cannot use, though the layer answered: it does not decode (bad compression, not
 * a layercache entry, written by something else), it is larger than the layer reads (`maxValueBytes`,
 * inflated size included), or the key holds another Redis type. The stack treats it as a miss and emits
 * `corruptEntry`; it is not a failure of the layer and never moves a circuit breaker. `key` is the key
 * in the layer's own store (with its prefix), for an operator to look at.
 */
export class CorruptEntryError extends LayerCacheError {
  readonly layer: string
  readonly key: string
  readonly reason: CorruptReason

  constructor(layer: string, key: string, reason: CorruptReason, detail: string, cause?: unknown) {
    super('CORRUPT_ENTRY', `${layer}: entry at "${key}" cannot be used (${reason}): ${detail}`, { cause })
    this.layer = layer
    this.key = key
    this.reason = reason
  }
}

/**
 * Some entries of a `getMany` were corrupt (see CorruptEntryError). The layer answered for every key:
 * `entries` holds its answer, with undefined for the corrupt ones, and `corrupt` the error of each of
 * those at the same index.
 */
export class CorruptEntriesError extends LayerCacheError {
  readonly layer: string
  readonly entries: readonly (CacheEntry | undefined)[]
  readonly corrupt: readonly (CorruptEntryError | undefined)[]

  constructor(
    layer: string,
    entries: readonly (CacheEntry | undefined)[],
    corrupt: readonly (CorruptEntryError | undefined)[],
  ) {
    const count = corrupt.filter((error) => error !== undefined).length
    super('CORRUPT_ENTRY', `${layer}: ${count} of ${entries.length} entries read cannot be used`)
    this.layer = layer
    this.entries = entries
    this.corrupt = corrupt
  }
}

/** A layer could not answer (connection down, command failed). The cache state is unknown, not stale. */
export class LayerUnavailableError extends LayerCacheError {
  readonly layer: string

  constructor(layer: string, message: string, cause?: unknown, code = 'LAYER_UNAVAILABLE') {
    super(code, message, { cause })
    this.layer = layer
  }
}

/**
 * A failure of a remote call as a typed error: a LayerCacheError as it is, anything else as
 * LayerUnavailableError "<label>: <operation> failed: <reason>" (label: the layer's name by default).
 */
export function asUnavailable(
  layer: string,
  operation: string,
  error: unknown,
  label = layer,
): LayerCacheError {
  if (error instanceof LayerCacheError) return error
  const reason = error instanceof Error ? error.message : String(error)
  return new LayerUnavailableError(layer, `${label}: ${operation} failed: ${reason}`, error)
}

/** A layer command did not answer within its timeout. */
export class LayerTimeoutError extends LayerUnavailableError {
  readonly timeoutMs: number

  constructor(layer: string, operation: string, timeoutMs: number) {
    super(layer, `${layer}: ${operation} did not answer within ${timeoutMs} ms`, undefined, 'LAYER_TIMEOUT')
    this.timeoutMs = timeoutMs
  }
}

/** A loader did not finish within its hard timeout (and no stale value could stand in). */
export class LoaderTimeoutError extends LayerCacheError {
  readonly key: string
  readonly timeoutMs: number

  constructor(key: string, timeoutMs: number) {
    super('LOADER_TIMEOUT', `Loader for "${key}" did not finish within its hard timeout of ${timeoutMs} ms`)
    this.key = key
    this.timeoutMs = timeoutMs
  }
}

/**
 * A layer refused a write because an invalidation of one of its keys or tags got in between (possibly
 * on another instance). Not a failure: the stack drops the value from every layer and carries on.
 */
export class WriteFencedError extends LayerCacheError {
  readonly keys: readonly string[]

  constructor(keys: readonly string[]) {
    super('WRITE_FENCED', `Write of ${keys.length} key(s) dropped: an invalidation got in between`)
    this.keys = keys
  }
}

/**
 * An invalidation reached the shared layers but could not be announced to the other instances: their
 * in-process layers may still hold the value until they notice the gap (next heartbeat) and flush.
 */
export class InvalidationBusError extends LayerCacheError {
  constructor(message: string, cause?: unknown) {
    super('BUS_UNAVAILABLE', message, { cause })
  }
}

/** A remote layer was skipped without being called: its circuit breaker is open after repeated failures. */
export class CircuitOpenError extends LayerUnavailableError {
  readonly retryAt: number

  constructor(layer: string, retryAt: number) {
    super(layer, `${layer}: skipped, circuit open after repeated failures`, undefined, 'CIRCUIT_OPEN')
    this.retryAt = retryAt
  }
}

/**
 * A call on a CacheStack after `close()` began (or on a closed WriteBehind queue). Nothing was read or
 * written: a closed stack no longer hears the invalidation bus, so it could not vouch for what it holds.
 */
export class CacheClosedError extends LayerCacheError {
  constructor(what: string) {
    super('CACHE_CLOSED', `${what} is closed`)
  }
}
