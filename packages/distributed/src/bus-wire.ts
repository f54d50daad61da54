import type { BusOperation, KeyMatch } from '@layercache/core'

/** Bumped when the body changes incompatibly; receivers count and drop versions they do not speak. */
export const WIRE_VERSION = 'v1'

/**
 * The signed part of a message. `o` is null for a heartbeat (it only advances the sequence, so peers
 * notice lost messages even when nothing is invalidated).
 */
export interface WireBody {
  /** Sender id (random per bus instance). */
  readonly s: string
  /**
   * The sender's sequence number: 1 for its first message, +1 per message, heartbeats included. With the
   * sender id it orders the sender's messages: what is not newer than the last heard is a replay.
   */
  readonly q: number
  /** The sender's wall clock (ms): for logs; no decision reads it. Receivers of earlier releases need it. */
  readonly t: number
  /** A random nonce; receivers of earlier releases need it. */
  readonly n: string
  /**
   * The largest join epoch the sender knew when it signed (see RedisInvalidationBus): a message carrying
   * less than a receiver's own was signed before its sender could know that receiver had subscribed.
   * Absent in messages of earlier releases.
   */
  readonly e?: number
  readonly o: readonly WireOperation[] | null
  /**
   * Set while the sender has messages it failed to publish (they never reached Redis, so no receiver can
   * see a gap in the numbers when they were the first it would have heard): receivers flush.
   */
  readonly l?: 1
}

type WireOperation =
  | { readonly k: readonly string[] }
  | { readonly t: readonly string[]; readonly m: 'any' | 'all' }
  | { readonly p: string; readonly g?: string }
  | { readonly n: number }

export function toWire(operation: BusOperation): WireOperation {
  if ('keys' in operation) return { k: operation.keys }
  if ('tags' in operation) return { t: operation.tags, m: operation.mode }
  if ('match' in operation) {
    const { scope, pattern } = operation.match
    return pattern === undefined ? { p: scope } : { p: scope, g: pattern }
  }
  return { n: operation.generation }
}

const isStringArray = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === 'string')

/** The operation, or undefined when it is malformed (a peer on a newer version, or tampering without a secret). */
function fromWire(wire: unknown): BusOperation | undefined {
  if (wire === null || typeof wire !== 'object') return undefined
  const op = wire as Record<string, unknown>
  if (isStringArray(op.k)) return { keys: op.k }
  if (isStringArray(op.t) && (op.m === 'any' || op.m === 'all')) return { tags: op.t, mode: op.m }
  if (typeof op.p === 'string') {
    if (op.g === undefined) return { match: { scope: op.p } }
    if (typeof op.g === 'string') return { match: { scope: op.p, pattern: op.g } satisfies KeyMatch }
    return undefined
  }
  if (typeof op.n === 'number' && Number.isSafeInteger(op.n) && op.n >= 0) return { generation: op.n }
  return undefined
}

/** A join epoch: what Redis' INCR hands out, as far as JavaScript numbers are exact. */
export function isEpoch(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

export interface DecodedBody {
  readonly sender: string
  readonly sequence: number
  /** Null for a heartbeat. */
  readonly operations: readonly BusOperation[] | null
  /** The sender failed to publish some earlier message. */
  readonly lost: boolean
  /** The sender's join epoch when it signed; undefined from a sender of an earlier release. */
  readonly epoch: number | undefined
  /** The sender's wall clock when it sent (ms since the epoch), for the bus-lag metric only. */
  readonly sentAt: number | undefined
}

/** Parses a body's JSON; undefined when anything is missing or of the wrong type. */
export function decodeBody(text: string): DecodedBody | undefined {
  let body: Partial<WireBody>
  try {
    body = JSON.parse(text) as Partial<WireBody>
  } catch {
    return undefined
  }
  if (body === null || typeof body !== 'object') return undefined
  const { s, q, o, l, e, t } = body
  const lost = l === 1
  const sentAt = typeof t === 'number' && Number.isFinite(t) ? t : undefined
  if (typeof s !== 'string') return undefined
  if (typeof q !== 'number' || !Number.isSafeInteger(q) || q < 1) return undefined
  if (e !== undefined && !isEpoch(e)) return undefined
  if (o === null) return { sender: s, sequence: q, operations: null, lost, epoch: e, sentAt }
  if (!Array.isArray(o)) return undefined
  const operations: BusOperation[] = []
  for (const wire of o) {
    const operation = fromWire(wire)
    if (operation === undefined) return undefined
    operations.push(operation)
  }
  return { sender: s, sequence: q, operations, lost, epoch: e, sentAt }
}

/**
 * Splits operations so no message body grows past `maxBytes` (approximately: measured on the JSON of each
 * operation); a key list larger than that is cut into several operations.
 */
export function packOperations(operations: readonly BusOperation[], maxBytes: number): WireOperation[][] {
  const messages: WireOperation[][] = []
  let current: WireOperation[] = []
  let size = 0
  const push = (wire: WireOperation, bytes: number) => {
    if (current.length > 0 && size + bytes > maxBytes) {
      messages.push(current)
      current = []
      size = 0
    }
    current.push(wire)
    size += bytes
  }
  for (const operation of operations) {
    if ('keys' in operation) {
      let chunk: string[] = []
      let chunkBytes = 0
      for (const key of operation.keys) {
        const bytes = Buffer.byteLength(key) + 3
        if (chunk.length > 0 && chunkBytes + bytes > maxBytes) {
          push({ k: chunk }, chunkBytes)
          chunk = []
          chunkBytes = 0
        }
        chunk.push(key)
        chunkBytes += bytes
      }
      if (chunk.length > 0) push({ k: chunk }, chunkBytes)
    } else {
      const wire = toWire(operation)
      push(wire, Buffer.byteLength(JSON.stringify(wire)))
    }
  }
  if (current.length > 0) messages.push(current)
  return messages
}
