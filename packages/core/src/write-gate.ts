import { type CacheEntry, remainingTtl } from './entry'
import type { ErrorThrottle } from './error-throttle'
import { WriteFencedError } from './errors'
import type { InvalidationFence } from './invalidation-fence'
import { type CacheLayer, type CommitWrite, isLocalLayer, type LayerWrite } from './layer'

/** What to do when a remote layer fails; see the `onLayerError` option. */
export type LayerErrorMode = 'throw' | 'bypass'

/**
 * Which invalidations refuse a write:
 * - `covering`: any that covers the key (key, tag, prefix, pattern, clear, generation): for a value read
 *   or loaded before the invalidation, which may be older than what it removed;
 * - `key`: only one of this very key: for a new value (set, mset), which a group invalidation that does
 *   not name it must not drop from one layer and leave in another.
 */
export type WriteGuard = 'covering' | 'key'

/** How a write went on one layer. */
export type LayerOutcome = 'written' | 'fenced' | 'failed'

/** Records a layer failure; throws it as a typed error unless `mode` is bypass. */
export type LayerFailed = (
  layerIndex: number,
  operation: string,
  key: string | undefined,
  error: unknown,
  mode: LayerErrorMode,
) => void

/** Where the gate reports (the stack's stats and events). */
export interface GateReporter {
  fenced(full: string): void
  failed: LayerFailed
  skipped(writes: number): void
  backfilled(full: string, from: CacheLayer, to: CacheLayer, ttl: number | undefined): void
}

/**
 * The one place that decides whether a value may reach a layer, and the one local invalidation.
 *
 * Every read, load and write `open`s a permit (a fence ticket) when it begins and `close`s it when done.
 * An invalidation `forget`s keys here first, which fences every permit opened before it: a value obtained
 * under such a permit is refused by `allows` before any write, and again by each layer right before its
 * write leaves (`stillValid`); a shared layer that keeps its own fences (Redis: epochs, log, key counters,
 * handed over in `fences`) checks them in the same atomic step as its write. A refused write leaves
 * nothing in the layer that refused it and is removed from the layers that took it.
 */
export class WriteGate {
  constructor(
    private readonly layers: readonly CacheLayer[],
    readonly fence: InvalidationFence,
    private readonly flights: Map<string, Promise<unknown>>,
    private readonly errorThrottle: ErrorThrottle,
    private readonly report: GateReporter,
  ) {}

  /** A read, load or write begins; returns its ticket. Pair with `close`. */
  open(): number {
    return this.fence.begin()
  }

  close(): void {
    this.fence.end()
  }

  /** Whether a value obtained under `ticket` may still be written. */
  allows(full: string, ticket: number, guard: WriteGuard = 'covering'): boolean {
    return guard === 'covering' ? !this.fence.isFenced(full, ticket) : !this.fence.isKeyFenced(full, ticket)
  }

  /**
   * Invalidates `fulls` in this process: fences the permits open now, detaches loads in flight (later
   * callers start afresh), forgets their error throttles and, with `memory`, drops the in-process copies.
   */
  forget(fulls: Iterable<string>, memory = true): void {
    const keys = memory ? [...fulls] : fulls
    for (const full of keys) {
      this.fence.invalidate(full)
      this.flights.delete(full)
      this.errorThrottle.forget(full)
    }
    if (memory) {
      for (const layer of this.layers) if (isLocalLayer(layer)) layer.deleteMany(keys as string[])
    }
  }

  /**
   * Invalidates everything in flight (a group invalidation cannot name the keys being loaded); with
   * `memory`, empties the in-process layers too.
   */
  forgetAll(memory = false): void {
    this.fence.invalidateAll()
    this.flights.clear()
    if (memory) for (const layer of this.layers) if (isLocalLayer(layer)) layer.clear()
  }

  /** Copies a lower-layer hit into every faster layer with its remaining TTL, unless it was invalidated. */
  backfill(full: string, entry: CacheEntry, foundAt: number, ticket: number): void {
    const ttl = remainingTtl(entry, Date.now())
    if (ttl === 0) return
    if (!this.allows(full, ticket)) {
      this.report.fenced(full)
      return
    }
    // A value from a remote layer was just decoded and is ours; one from an in-process layer may be the
    // very object a caller stored, which must not be frozen under them.
    const ownsValue = !isLocalLayer(this.layers[foundAt]!)
    const stillValid = () => this.allows(full, ticket)
    const writes: LayerWrite[] = [{ key: full, entry, options: { ttl, ownsValue, stillValid } }]
    for (let i = 0; i < foundAt; i++) {
      const layer = this.layers[i]!
      this.report.backfilled(full, this.layers[foundAt]!, layer, ttl)
      try {
        const done = layer.prepareWrites(writes)()
        if (done instanceof Promise) {
          // Keep invalidations recorded until this write is out, or a delete landing meanwhile would be missed.
          this.fence.begin()
          done
            .catch((error) => this.report.failed(i, 'backfill', full, error, 'bypass'))
            .finally(() => this.fence.end())
        }
      } catch (error) {
        this.report.failed(i, 'backfill', full, error, 'bypass')
      }
    }
  }

  /**
   * Writes what a load produced under `ticket`, unless an invalidation covering the key came since (here,
   * or on any instance through the shared layers' `fences`). Failures of remote layers are bypassed.
   * `fenced`: refused (by this process or a shared layer) and removed wherever it landed; `failed`: some
   * layer could not take it; `written`: every layer has it.
   */
  async writeLoaded(
    full: string,
    entry: CacheEntry,
    ttl: number | undefined,
    ticket: number,
    fences: ReadonlyMap<string, unknown> | undefined,
  ): Promise<LayerOutcome> {
    if (!this.allows(full, ticket)) {
      this.report.fenced(full)
      return 'fenced'
    }
    const stillValid = () => this.allows(full, ticket)
    const writes = [{ key: full, entry, options: { ttl, stillValid, fences } }]
    const outcomes = await this.commit(this.prepare(writes), writes, 'bypass')
    if (outcomes.includes('fenced') || !this.allows(full, ticket)) return 'fenced'
    return outcomes.includes('failed') ? 'failed' : 'written'
  }

  /**
   * Phase one on every layer: validates and encodes (bad input throws here, and nothing has changed
   * anywhere). Commit what it returns with `commit`.
   */
  prepare(writes: readonly LayerWrite[]): CommitWrite[] {
    return this.layers.map((layer) => layer.prepareWrites(writes))
  }

  /**
   * Phase two on every layer; returns each layer's outcome. A refused write is removed from the layers
   * that took it. On a remote failure in `throw` mode the written keys are removed from every layer (so
   * this instance does not serve what Redis refused) and the typed error is thrown.
   *
   * With `overwrite` (set, mset: new values written under that ticket) the shared layers are written
   * first and the in-process ones after, in one step with fencing older reads of the keys: a read that
   * fetched the previous value from Redis while the new one was on its way cannot leave it in memory.
   */
  async commit(
    commits: readonly CommitWrite[],
    writes: readonly LayerWrite[],
    mode: LayerErrorMode,
    overwrite?: { readonly ticket: number },
  ): Promise<LayerOutcome[]> {
    const outcomes: LayerOutcome[] = commits.map(() => 'written')
    const pending: Promise<void>[] = []
    let failures: { index: number; error: unknown }[] = []
    const run = (i: number) => {
      try {
        const done = commits[i]!()
        if (done instanceof Promise)
          pending.push(done.catch((error) => void failures.push({ index: i, error })))
      } catch (error) {
        failures.push({ index: i, error })
      }
    }
    const local = (i: number) => isLocalLayer(this.layers[i]!)
    for (let i = 0; i < commits.length; i++) if (overwrite === undefined || !local(i)) run(i)
    if (pending.length > 0) await Promise.all(pending)
    if (overwrite !== undefined) {
      const failedRemotely = failures.some(({ error }) => !(error instanceof WriteFencedError))
      if (!failedRemotely || mode === 'bypass') this.overwriteInMemory(writes, overwrite.ticket, run)
    }
    if (failures.length === 0) return outcomes
    const fenced = failures.filter(({ error }) => error instanceof WriteFencedError)
    if (fenced.length > 0) {
      const keys = fenced.flatMap(({ error }) => (error as WriteFencedError).keys)
      for (const key of keys) this.report.fenced(key)
      for (const { index } of fenced) outcomes[index] = 'fenced'
      await this.removeQuietly(keys, new Set(fenced.map(({ index }) => index)))
      if (fenced.length === failures.length) return outcomes
    }
    failures = failures.filter(({ error }) => !(error instanceof WriteFencedError))
    for (const { index } of failures) outcomes[index] = 'failed'
    if (mode === 'throw') await this.removeQuietly(writes.map((w) => w.key))
    else this.report.skipped(failures.length * writes.length)
    const operation = writes.length === 1 ? 'set' : 'setMany'
    for (const { index, error } of failures) this.report.failed(index, operation, writes[0]?.key, error, mode)
    return outcomes
  }

  /**
   * The in-process half of an overwrite, in one synchronous step. A key whose new value may be written
   * loses whatever a racing read copied into memory first; so does one an invalidation or another
   * instance's write reached meanwhile (what a read copied may be older than what Redis holds now); one
   * a later set of this instance overwrote keeps that newer value. Reads begun before are fenced off all.
   */
  private overwriteInMemory(writes: readonly LayerWrite[], ticket: number, run: (i: number) => void): void {
    const keys = writes.map((write) => write.key)
    const stale = keys.filter(
      (key) => this.allows(key, ticket, 'key') || !this.fence.isOverwrittenSince(key, ticket),
    )
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i]!
      if (!isLocalLayer(layer)) continue
      if (stale.length > 0) layer.deleteMany(stale)
      run(i)
    }
    for (const key of stale) this.fence.overwritten(key)
  }

  /** Removes keys from every layer but `except` (the ones that refused: they wrote nothing). */
  private async removeQuietly(keys: readonly string[], except?: ReadonlySet<number>): Promise<void> {
    await Promise.all(
      this.layers.map(async (layer, i) => {
        if (except?.has(i)) return
        try {
          await layer.deleteMany(keys)
        } catch {
          // Best effort: the caller is about to get the original failure.
        }
      }),
    )
  }
}
