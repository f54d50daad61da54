import { type CacheEntry, isFresh } from './entry'
import { CircuitOpenError, CorruptEntriesError, CorruptEntryError } from './errors'
import type { Generations } from './generations'
import type { CacheLayer, MaybePromise } from './layer'
import type { StatsCollector } from './stats'
import type { LayerErrorMode, LayerFailed, WriteGate } from './write-gate'

/** What ReadThrough needs of its stack: the layers, the gate's back-fill, generations and reporting. */
export interface ReadThroughHost {
  readonly layers: readonly CacheLayer[]
  readonly gate: Pick<WriteGate, 'open' | 'close' | 'backfill'>
  readonly generations: Generations | undefined
  readonly stats: StatsCollector
  /** The value an entry stands for (undefined for a negative entry). */
  answerOf(entry: CacheEntry): unknown
  countHit(layerIndex: number, full: string): void
  countMiss(full: string): void
  corruptEntry(layerIndex: number, full: string, error: CorruptEntryError): void
  readonly layerFailed: LayerFailed
}

/** Where a traced read records which layer answered and whether a failing layer was passed over. */
export interface ReadTrace {
  layer?: string
  hit?: boolean
  degraded?: boolean
  /** The layer skipped because its circuit breaker was open (gracefulDegradation). */
  circuitOpen?: string
}

/** Reads down the layers, books hits and misses, and back-fills faster layers through the write gate. */
export class ReadThrough {
  constructor(private readonly state: ReadThroughHost) {}

  /**
   * Reads layers from `from` down and books the first answer (back-filling the layers above it), or
   * counts a miss. `get` wants the answer's value and only fresh entries; a load wants the entry itself,
   * stale or not, to judge it. Cached values are never undefined, so undefined means "nothing usable".
   * `countMiss` false: a load looking again (its miss was counted by its first read).
   */
  readThrough(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: false,
    countMiss?: boolean,
    trace?: ReadTrace,
  ): Promise<unknown>
  readThrough(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: true,
    countMiss?: boolean,
    trace?: ReadTrace,
  ): Promise<CacheEntry | undefined>
  readThrough(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: boolean,
    countMiss = true,
    trace?: ReadTrace,
  ): Promise<unknown> {
    return from === this.state.layers.length - 1
      ? this.readLastLayer(full, from, mode, asEntry, countMiss, trace)
      : this.readLayers(full, from, mode, asEntry, countMiss, trace)
  }

  /** The common case (L1 missed, one layer left): one promise reaction instead of an async frame. */
  private readLastLayer(
    full: string,
    index: number,
    mode: LayerErrorMode,
    asEntry: boolean,
    countMiss: boolean,
    trace: ReadTrace | undefined,
  ): Promise<unknown> {
    const gate = this.state.gate
    const ticket = gate.open()
    let reply: Promise<CacheEntry | undefined> | CacheEntry | undefined
    try {
      reply = this.remoteGet(index, full)
    } catch (error) {
      reply = Promise.reject(error)
    }
    return Promise.resolve(reply).then(
      (entry) => {
        try {
          const found = this.acceptRead(full, index, entry, ticket, !asEntry, trace)
          if (found === undefined) {
            if (countMiss) this.state.countMiss(full)
            return undefined
          }
          return asEntry ? found : this.state.answerOf(found)
        } finally {
          gate.close()
        }
      },
      (error: unknown) => {
        gate.close()
        // An entry the layer holds but cannot use is a miss in every error mode: the layer answered.
        if (error instanceof CorruptEntryError) this.corruptRead(index, full, error)
        else this.layerFailed(index, full, error, mode, trace)
        if (countMiss) this.state.countMiss(full)
        return undefined
      },
    )
  }

  private async readLayers(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: boolean,
    countMiss: boolean,
    trace: ReadTrace | undefined,
  ): Promise<unknown> {
    const state = this.state
    const layers = state.layers
    const ticket = state.gate.open()
    try {
      for (let i = from; i < layers.length; i++) {
        let entry: CacheEntry | undefined
        try {
          entry = await this.remoteGet(i, full)
        } catch (error) {
          if (error instanceof CorruptEntryError) this.corruptRead(i, full, error)
          else this.layerFailed(i, full, error, mode, trace)
          continue
        }
        const found = this.acceptRead(full, i, entry, ticket, !asEntry, trace)
        if (found !== undefined) return asEntry ? found : this.state.answerOf(found)
      }
      if (countMiss) this.state.countMiss(full)
      return undefined
    } finally {
      state.gate.close()
    }
  }

  /**
   * `getMany` of one layer, each entry it could not use (CorruptEntriesError) counted, emitted and
   * answered as undefined, so the healthy entries of the same call still count.
   */
  getMany(index: number, fulls: readonly string[]): MaybePromise<(CacheEntry | undefined)[]> {
    const layer = this.state.layers[index]!
    if (layer.local) return layer.getMany(fulls)
    return Promise.resolve(layer.getMany(fulls)).catch((error: unknown) => {
      if (!(error instanceof CorruptEntriesError)) throw error
      error.corrupt.forEach((corrupt, i) => {
        if (corrupt !== undefined) this.state.corruptEntry(index, fulls[i]!, corrupt)
      })
      return error.entries.slice()
    })
  }

  /** A layer's failed read, reported (and rethrown unless bypassed); a traced read notes it carried on. */
  private layerFailed(
    index: number,
    full: string,
    error: unknown,
    mode: LayerErrorMode,
    trace: ReadTrace | undefined,
  ): void {
    this.state.layerFailed(index, 'get', full, error, mode)
    if (trace === undefined) return
    trace.degraded = true
    if (error instanceof CircuitOpenError) trace.circuitOpen = this.state.layers[index]!.name
  }

  /** A read that found an entry the layer could not use: a miss of that layer, counted as corrupt. */
  private corruptRead(index: number, full: string, error: CorruptEntryError): void {
    this.state.corruptEntry(index, full, error)
    this.state.stats.layerMisses[index]!++
  }

  /** A layer's answer; from a shared layer with generations on, a miss if the generation moved meanwhile. */
  private remoteGet(index: number, full: string): Promise<CacheEntry | undefined> | CacheEntry | undefined {
    const layer = this.state.layers[index]!
    const generations = this.state.generations
    if (generations === undefined || layer.local) return layer.get(full)
    return generations.guard(Promise.resolve(layer.get(full)), undefined)
  }

  /**
   * Books a layer's answer: a live entry (a fresh one when `freshOnly`) counts as a hit, back-fills the
   * layers above and is returned; anything else counts as that layer's miss.
   */
  private acceptRead(
    full: string,
    index: number,
    entry: CacheEntry | undefined,
    ticket: number,
    freshOnly: boolean,
    trace: ReadTrace | undefined,
  ): CacheEntry | undefined {
    if (entry === undefined || (freshOnly && entry.freshUntil !== undefined && !isFresh(entry))) {
      this.state.stats.layerMisses[index]!++
      return undefined
    }
    this.state.countHit(index, full)
    if (trace !== undefined) {
      trace.layer = this.state.layers[index]!.name
      trace.hit = true
    }
    if (index > 0) this.state.gate.backfill(full, entry, index, ticket)
    return entry
  }
}
