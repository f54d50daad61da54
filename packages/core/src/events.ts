import type { BusOperation, UnverifiedReason } from './distribution'
import type { CorruptReason } from './errors'

export interface CacheEventMap {
  /** A read found the key in `layer` (index 0 is the fastest). */
  hit: { key: string; layer: string; layerIndex: number }
  /** No layer had the key. */
  miss: { key: string }
  /** A hit in a lower layer was copied into an upper one. */
  backfill: { key: string; from: string; to: string; ttl: number | undefined }
  set: { key: string }
  delete: { key: string }
  /** A loader ran for a miss; `error` is set when it threw. */
  load: { key: string; durationMs: number; error?: unknown }
  /** A getOrSet call joined a load already in flight for the same key. */
  coalesced: { key: string }
  /** A loaded or read-through value was not written back because the key was invalidated meanwhile. */
  fenced: { key: string }
  /** A stale value was served: inside the revalidate window, or standing in for a failed / slow loader. */
  stale: { key: string; reason: 'revalidate' | 'error' | 'timeout' }
  /** A background refresh started: the value was stale, or refresh-ahead / early expiration fired. */
  refresh: { key: string; reason: 'stale' | 'ahead' | 'early' }
  /** A loader ran past its soft or hard timeout. */
  timeout: { key: string; kind: 'soft' | 'hard' }
  /** warm() finished one key (`error` set when its loader failed). */
  warm: { key: string; done: number; total: number; error?: unknown }
  /** A warmer refilled its key after an invalidation removed it (`error` set when its loader failed). */
  rewarm: { key: string; error?: unknown }
  /**
   * A group invalidation ran (`count` keys removed), or a soft invalidation (`expire*`: `count` entries
   * marked stale).
   */
  invalidate:
    | { kind: 'tags'; tags: readonly string[]; mode: 'any' | 'all'; count: number }
    | { kind: 'prefix'; prefix: string; count: number }
    | { kind: 'pattern'; scope: string; pattern: string; count: number }
    | { kind: 'version'; name: string; version: number }
    | { kind: 'expire'; key: string; count: number }
    | { kind: 'expireByTag'; tags: readonly string[]; count: number }
    | { kind: 'expireByPrefix'; prefix: string; count: number }
  /** The stack moved to another generation (bumped here, or seen moved in the shared layer). */
  generation: { generation: number; previous: number }
  /** Cleaning up an old generation's keys after a bump finished (`error` set when it stopped early). */
  generationCleanup: { generation: number; removed: number; error?: unknown }
  /** Another instance's invalidations (heard on the bus) were applied to the in-process layers. */
  peerInvalidation: { operations: readonly BusOperation[] }
  /**
   * Bus messages may have been missed (connection lost, a gap in a sender's sequence, no heartbeat): the
   * in-process layers were flushed.
   */
  unverified: { reason: UnverifiedReason; detail: string }
  /**
   * A remote layer's circuit breaker moved (`gracefulDegradation`): `open` skips the layer, `half-open`
   * lets one probe call through, `closed` is back to normal.
   */
  circuit: { layer: string; state: 'open' | 'half-open' | 'closed' }
  /**
   * A layer answered with an entry it cannot use (CorruptEntryError: it does not decode, it is larger than
   * the layer's `maxValueBytes`, or the key holds another Redis type). The read went on as a miss; the
   * layer's health is not in question, so no circuit breaker moved. The entry stays where it is until a
   * write replaces it (`getOrSet` does) or it expires. Also emitted when the shared generation (`P~gen`)
   * holds something that is not a generation: the stack keeps the one it has.
   */
  corruptEntry: { key: string; layer: string; reason: CorruptReason; error: unknown }
  /**
   * A cached value failed the `schema` of the read (`get`, `mget`, `getOrSet`, `wrap`): a miss for that
   * read; `getOrSet` reloads it. Typically an entry the previous deploy wrote in another shape.
   */
  schemaMismatch: { key: string; issues: readonly unknown[] }
  /** A layer failed; `handled` is true when the stack carried on without it. */
  error: { operation: string; layer: string; key?: string | undefined; error: unknown; handled: boolean }
}

export type CacheEventName = keyof CacheEventMap
export type CacheEventListener<K extends CacheEventName> = (event: CacheEventMap[K]) => void

/**
 * A minimal typed emitter. Call sites check `listening(name)` before building a payload, so events cost
 * one property read when nobody listens. A throwing listener never breaks a cache call.
 */
export class CacheEvents {
  private readonly listeners: { [K in CacheEventName]?: CacheEventListener<K>[] } = {}

  listening(name: CacheEventName): boolean {
    return this.listeners[name] !== undefined
  }

  on<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): () => void {
    const list = (this.listeners[name] ?? []) as CacheEventListener<K>[]
    this.listeners[name] = [...list, listener] as (typeof this.listeners)[K]
    return () => this.off(name, listener)
  }

  off<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): void {
    const list = this.listeners[name] as CacheEventListener<K>[] | undefined
    if (!list) return
    const rest = list.filter((l) => l !== listener)
    this.listeners[name] = (rest.length === 0 ? undefined : rest) as (typeof this.listeners)[K]
  }

  emit<K extends CacheEventName>(name: K, event: CacheEventMap[K]): void {
    const list = this.listeners[name] as CacheEventListener<K>[] | undefined
    if (!list) return
    for (const listener of list) {
      try {
        listener(event)
      } catch {
        // A listener's bug must not turn a cache hit into a failure.
      }
    }
  }
}
