import { type BusContext, channels, observe, observed, type UnverifiedMessage } from './diagnostics'
import type { BusListener, BusOperation, InvalidationBus, UnverifiedReason } from './distribution'
import { InvalidationBusError, InvalidOptionError } from './errors'
import type { CacheEvents } from './events'
import type { Generations } from './generations'
import { type CacheLayer, isLocalLayer, type LocalCacheLayer } from './layer'
import type { StatsCollector } from './stats'
import type { WriteGate } from './write-gate'

/** What BusLink needs of its stack: the layers, the local invalidation, generations and reporting. */
export interface BusLinkHost {
  readonly layers: readonly CacheLayer[]
  readonly gate: Pick<WriteGate, 'forget' | 'forgetAll'>
  readonly generations: Generations | undefined
  readonly stats: StatsCollector
  readonly events: CacheEvents
  /** The stack's name, for traces. */
  readonly name: string
  /** Drops every in-process layer's entries (an unverified flush). */
  forgetLocalMemory(): void
}

export function readBusOption(bus: unknown): InvalidationBus | undefined {
  if (bus === undefined) return undefined
  const candidate = bus as Partial<InvalidationBus> | null
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    typeof candidate.publish !== 'function' ||
    typeof candidate.subscribe !== 'function'
  ) {
    throw new InvalidOptionError(
      'invalidationBus must implement publish() and subscribe() (RedisInvalidationBus)',
    )
  }
  return candidate as InvalidationBus
}

/**
 * A stack's side of the invalidation bus: announces this instance's invalidations to the others, and
 * applies theirs to the in-process layers only (the shared layers were already changed by the sender).
 * Applying fences loads and reads in flight here exactly as a local invalidation does, so a value read
 * from Redis before a peer's invalidation is not copied into memory after it.
 */
export class BusLink implements BusListener {
  private readonly unsubscribe: () => void
  private readonly local: readonly LocalCacheLayer[]

  constructor(
    private readonly bus: InvalidationBus,
    private readonly state: BusLinkHost,
    /** Also announce set/mset (broadcastL1Invalidation). */
    readonly announcesWrites: boolean,
  ) {
    this.local = state.layers.filter(isLocalLayer)
    this.unsubscribe = bus.subscribe(this)
  }

  /**
   * Tells the other instances; resolves once the message left. A failure is thrown as
   * InvalidationBusError (the change itself already happened in the shared layers).
   */
  announce(operations: readonly BusOperation[]): Promise<void> {
    if (!observed(channels.busPublish)) return this.publish(operations)
    const context: BusContext = { operation: 'bus.publish', cache: this.state.name, operations }
    return observe(channels.busPublish, context, () => this.publish(operations))
  }

  private async publish(operations: readonly BusOperation[]): Promise<void> {
    const stats = this.state.stats
    try {
      await this.bus.publish(operations)
      stats.busPublished++
    } catch (error) {
      stats.busPublishErrors++
      const reason = error instanceof Error ? error.message : String(error)
      throw new InvalidationBusError(
        `The invalidation was applied but could not be announced to other instances: ${reason}`,
        error,
      )
    }
  }

  apply(operations: readonly BusOperation[], message?: { readonly sentAt?: number | undefined }): void {
    if (!observed(channels.busReceive)) {
      this.applyNow(operations)
      return
    }
    const context: BusContext = {
      operation: 'bus.receive',
      cache: this.state.name,
      operations,
      sentAt: message?.sentAt,
      receivedAt: Date.now(),
    }
    // Applying is synchronous; observe() is promise-shaped, so it runs here and only the reporting waits.
    void observe(channels.busReceive, context, () => {
      this.applyNow(operations)
      return Promise.resolve()
    })
  }

  private applyNow(operations: readonly BusOperation[]): void {
    const state = this.state
    for (const operation of operations) {
      if ('keys' in operation) {
        state.gate.forget(operation.keys)
        // Keys stored in a newer generation than this instance's: it missed a move, and its memory holds
        // the same keys under the old generation's names, which the line above did not reach.
        const first = operation.keys[0]
        if (first !== undefined && state.generations?.named(first)) state.forgetLocalMemory()
      } else if ('generation' in operation) {
        // A hint to read the shared generation again, never a number to adopt: the message may be
        // unsigned. Until that read answers, what memory holds may be of the old generation: drop it.
        if (state.generations?.hinted(operation.generation)) state.forgetLocalMemory()
      } else {
        // A group invalidation cannot name what is in flight: fence all of it, as a local one does.
        state.gate.forgetAll()
        // A scope in a newer generation: as for keys above, memory under the old names is dropped.
        if ('match' in operation && state.generations?.named(operation.match.scope)) state.forgetLocalMemory()
        for (const layer of this.local) {
          if ('tags' in operation) {
            if (layer.invalidateTags === undefined) layer.clear()
            else layer.invalidateTags(operation.tags, operation.mode)
          } else if (layer.invalidateKeys === undefined) {
            layer.clear()
          } else {
            layer.invalidateKeys(operation.match)
          }
        }
      }
    }
    state.stats.peerInvalidations += operations.length
    if (state.events.listening('peerInvalidation')) {
      state.events.emit('peerInvalidation', { operations })
    }
  }

  /** Messages may have been missed: nothing in memory can be vouched for any more. */
  unverified(reason: UnverifiedReason, detail: string): void {
    const state = this.state
    state.forgetLocalMemory()
    // A missed message may have been a generation move: read the shared number again now, rather than at
    // this instance's next remote call.
    void state.generations?.verify()
    state.stats.unverifiedFlushes++
    if (state.events.listening('unverified')) state.events.emit('unverified', { reason, detail })
    if (channels.unverified.hasSubscribers) {
      channels.unverified.publish({ cache: state.name, reason, detail } satisfies UnverifiedMessage)
    }
  }

  /** Stops hearing the bus, then closes it (its timers and subscription; the Redis clients stay open). */
  async close(): Promise<void> {
    this.unsubscribe()
    await this.bus.close?.()
  }
}
