import type { CircuitState } from './circuit-breaker'
export interface LayerStats {
  readonly name: string
  readonly hits: number
  readonly misses: number
  readonly errors: number
  /** A remote layer's circuit breaker, with `gracefulDegradation` (absent otherwise). */
  readonly circuit?: CircuitState
}

export interface CacheStats {
  readonly hits: number
  readonly misses: number
  /** hits / (hits + misses), 0 before the first read. */
  readonly hitRate: number
  readonly layers: readonly LayerStats[]
  readonly backfills: number
  readonly loaderCalls: number
  readonly loaderErrors: number
  /** getOrSet calls that joined a load already in flight instead of running the loader. */
  readonly coalesced: number
  /** Write-backs dropped because an invalidation landed while the value was being read or loaded. */
  readonly fencedWrites: number
  readonly sets: number
  readonly deletes: number
  readonly errors: number
  /** Stale values served, in all (revalidate window + the two below). */
  readonly staleServed: number
  /** Stale values served because the loader failed or timed out hard (stale-if-error). */
  readonly staleOnError: number
  /** Stale values served because the loader ran past its soft timeout. */
  readonly staleOnTimeout: number
  /** Background refreshes started (stale-while-revalidate, refresh-ahead, early expiration). */
  readonly backgroundRefreshes: number
  /** Reads that found a fresh value due for refresh-ahead or early expiration. */
  readonly earlyRefreshes: number
  readonly softTimeouts: number
  readonly hardTimeouts: number
  /** Reads answered by a cached "absent" (negative caching). */
  readonly negativeHits: number
  /** Loaded values not cached (undefined without negativeTtl, or refused by shouldCache). */
  readonly uncached: number
  /** Keys whose loader ran during warm(). */
  readonly warmed: number
  /** Keys refilled by their warmer right after an invalidation removed them. */
  readonly rewarmed: number
  /** Group invalidations run (by tag, prefix or pattern). */
  readonly invalidations: number
  /** Soft invalidations run (expire, expireByTag, expireByPrefix). */
  readonly expirations: number
  /**
   * Writes a failing layer did not take while the call carried on (bypass mode, write-backs after loads),
   * counted once per key and layer: the value lives only in the layers that took it.
   */
  readonly skippedWrites: number
  /** Times a layer's circuit breaker opened (see `gracefulDegradation`). */
  readonly circuitOpens: number
  /** Entries a layer answered with but could not use (see the `corruptEntry` event); each read a miss. */
  readonly corruptEntries: number
  /** Cached values a read's `schema` refused (see the `schemaMismatch` event); each read a miss. */
  readonly schemaMismatches: number
  /** Bus messages this instance sent (each may carry several invalidations). */
  readonly busPublished: number
  /** Invalidations that reached the shared layers but could not be announced on the bus. */
  readonly busPublishErrors: number
  /** Other instances' invalidations applied to the in-process layers. */
  readonly peerInvalidations: number
  /** Times the in-process layers were flushed because bus messages may have been missed. */
  readonly unverifiedFlushes: number
  /** Loads that waited for another instance's load of the key (singleFlightCoordinator). */
  readonly coordinatedWaits: number
  /** Loads answered by another instance's load after waiting (read from a shared layer or handed over). */
  readonly coordinatedAnswers: number
  /** Background refreshes skipped because another instance was already loading the key. */
  readonly refreshesSkipped: number
  /** Coordinator calls that failed (e.g. Redis down). */
  readonly coordinatorErrors: number
  /** Loads that ran without a lease although a coordinator is set (it failed, or waiting ran out). */
  readonly uncoordinatedLoads: number
  /** Loads that finished after losing their lease: their write-back was skipped or removed everywhere. */
  readonly leasesLost: number
}

/** Plain counters: incrementing them is the whole cost of stats on the hot path. */
export class StatsCollector {
  hits = 0
  misses = 0
  backfills = 0
  loaderCalls = 0
  loaderErrors = 0
  coalesced = 0
  fencedWrites = 0
  sets = 0
  deletes = 0
  errors = 0
  staleServed = 0
  staleOnError = 0
  staleOnTimeout = 0
  backgroundRefreshes = 0
  earlyRefreshes = 0
  softTimeouts = 0
  hardTimeouts = 0
  negativeHits = 0
  uncached = 0
  warmed = 0
  rewarmed = 0
  invalidations = 0
  expirations = 0
  skippedWrites = 0
  circuitOpens = 0
  corruptEntries = 0
  schemaMismatches = 0
  busPublished = 0
  busPublishErrors = 0
  peerInvalidations = 0
  unverifiedFlushes = 0
  coordinatedWaits = 0
  coordinatedAnswers = 0
  refreshesSkipped = 0
  coordinatorErrors = 0
  uncoordinatedLoads = 0
  leasesLost = 0
  readonly layerHits: number[]
  readonly layerMisses: number[]
  readonly layerErrors: number[]

  constructor(private readonly layerNames: readonly string[]) {
    this.layerHits = layerNames.map(() => 0)
    this.layerMisses = layerNames.map(() => 0)
    this.layerErrors = layerNames.map(() => 0)
  }

  snapshot(): CacheStats {
    const reads = this.hits + this.misses
    return {
      hits: this.hits,
      misses: this.misses,
      hitRate: reads === 0 ? 0 : this.hits / reads,
      layers: this.layerNames.map((name, i) => ({
        name,
        hits: this.layerHits[i] ?? 0,
        misses: this.layerMisses[i] ?? 0,
        errors: this.layerErrors[i] ?? 0,
      })),
      backfills: this.backfills,
      loaderCalls: this.loaderCalls,
      loaderErrors: this.loaderErrors,
      coalesced: this.coalesced,
      fencedWrites: this.fencedWrites,
      sets: this.sets,
      deletes: this.deletes,
      errors: this.errors,
      staleServed: this.staleServed,
      staleOnError: this.staleOnError,
      staleOnTimeout: this.staleOnTimeout,
      backgroundRefreshes: this.backgroundRefreshes,
      earlyRefreshes: this.earlyRefreshes,
      softTimeouts: this.softTimeouts,
      hardTimeouts: this.hardTimeouts,
      negativeHits: this.negativeHits,
      uncached: this.uncached,
      warmed: this.warmed,
      rewarmed: this.rewarmed,
      invalidations: this.invalidations,
      expirations: this.expirations,
      skippedWrites: this.skippedWrites,
      circuitOpens: this.circuitOpens,
      corruptEntries: this.corruptEntries,
      schemaMismatches: this.schemaMismatches,
      busPublished: this.busPublished,
      busPublishErrors: this.busPublishErrors,
      peerInvalidations: this.peerInvalidations,
      unverifiedFlushes: this.unverifiedFlushes,
      coordinatedWaits: this.coordinatedWaits,
      coordinatedAnswers: this.coordinatedAnswers,
      refreshesSkipped: this.refreshesSkipped,
      coordinatorErrors: this.coordinatorErrors,
      uncoordinatedLoads: this.uncoordinatedLoads,
      leasesLost: this.leasesLost,
    }
  }

  reset(): void {
    this.hits = this.misses = this.backfills = this.loaderCalls = this.loaderErrors = 0
    this.coalesced = this.fencedWrites = this.sets = this.deletes = this.errors = 0
    this.staleServed = this.staleOnError = this.staleOnTimeout = this.backgroundRefreshes = 0
    this.earlyRefreshes = this.softTimeouts = this.hardTimeouts = this.negativeHits = 0
    this.uncached = this.warmed = this.rewarmed = this.invalidations = this.expirations = 0
    this.skippedWrites = this.circuitOpens = this.corruptEntries = this.schemaMismatches = 0
    this.busPublished = this.busPublishErrors = this.peerInvalidations = this.unverifiedFlushes = 0
    this.coordinatedWaits = this.coordinatedAnswers = this.refreshesSkipped = 0
    this.coordinatorErrors = this.uncoordinatedLoads = this.leasesLost = 0
    this.layerHits.fill(0)
    this.layerMisses.fill(0)
    this.layerErrors.fill(0)
  }
}
