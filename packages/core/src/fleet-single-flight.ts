import type {
  BusOperation,
  SingleFlightCoordinator,
  SingleFlightLease,
  SingleFlightResult,
  SingleFlightWait,
} from './distribution'
import type { CacheEntry } from './entry'
import { InvalidOptionError } from './errors'
import type { CacheEvents } from './events'
import type { CacheLayer } from './layer'
import type { StatsCollector } from './stats'
import type { LayerFailed, WriteGate } from './write-gate'

/** What FleetSingleFlight needs of its stack: the layers, the gate, the bus and reporting. */
export interface FleetHost {
  readonly layers: readonly CacheLayer[]
  readonly gate: Pick<WriteGate, 'forget'>
  readonly bus: { announce(operations: readonly BusOperation[]): Promise<void> } | undefined
  readonly stats: StatsCollector
  readonly events: CacheEvents
  readonly layerFailed: LayerFailed
}

export function readCoordinatorOption(value: unknown): SingleFlightCoordinator | undefined {
  if (value === undefined) return undefined
  const candidate = value as Partial<SingleFlightCoordinator> | null
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    typeof candidate.tryAcquire !== 'function' ||
    typeof candidate.wait !== 'function'
  ) {
    throw new InvalidOptionError(
      'singleFlightCoordinator must implement tryAcquire() and wait() (RedisSingleFlightCoordinator)',
    )
  }
  return candidate as SingleFlightCoordinator
}

/**
 * Waits for other instances' loads at most this many times per load, then loads without a lease: each
 * round ended with a holder releasing or dying, so this only runs out when loads keep failing elsewhere.
 */
const MAX_WAIT_ROUNDS = 8

/** How a load goes on once the fleet was asked. */
export type Turn =
  /** Run the loader, holding `lease` (undefined: without one, the coordinator failed or waiting ran out). */
  | { readonly lease: SingleFlightLease | undefined }
  /** Another instance's load answered: its entry, now in a shared layer. */
  | { readonly found: CacheEntry }
  /** Another instance's load answered with a value it could not cache. */
  | { readonly result: SingleFlightResult }
  /** A refresh that another instance is already running: nothing left to do. */
  | 'skip'

/** A stack's side of fleet-wide single-flight (invariant 5): leases, waiting, hand-over, lost leases. */
export class FleetSingleFlight {
  constructor(
    private readonly coordinator: SingleFlightCoordinator,
    private readonly state: FleetHost,
  ) {}

  /**
   * Takes the key's lease, or waits for the instance holding it and answers with what its load left:
   * a fresh entry below the in-process layer (`lookBelow`), else a handed-over result; else tries again.
   * A refresh (something is already being served) does not wait: it is skipped while another instance
   * loads. Never waits without bound: the coordinator's wait has a timeout, and the rounds are counted.
   */
  async turn(
    full: string,
    refreshing: boolean,
    lookBelow: () => Promise<CacheEntry | undefined>,
  ): Promise<Turn> {
    const stats = this.state.stats
    let lastRound = false
    for (let round = 1; ; round++) {
      let lease: SingleFlightLease | undefined
      try {
        lease = await this.coordinator.tryAcquire(full)
      } catch (error) {
        return this.withoutLease(full, 'tryAcquire', error)
      }
      if (lease !== undefined) {
        // A load that ended between this instance's read and the acquisition wrote before releasing:
        // looking again is what makes the fleet run one loader, not one per late reader.
        let found: CacheEntry | undefined
        try {
          found = await lookBelow()
        } catch (error) {
          await this.release(full, lease, undefined, false)
          throw error
        }
        if (found === undefined) return { lease }
        await this.release(full, lease, undefined, false)
        return { found }
      }
      if (refreshing) {
        stats.refreshesSkipped++
        return 'skip'
      }
      if (lastRound) return this.withoutLease(full, 'wait', undefined)
      stats.coordinatedWaits++
      let waited: SingleFlightWait
      try {
        waited = await this.coordinator.wait(full)
      } catch (error) {
        return this.withoutLease(full, 'wait', error)
      }
      const found = await lookBelow()
      if (found !== undefined) {
        stats.coordinatedAnswers++
        return { found }
      }
      if (waited.kind === 'released' && waited.result !== undefined) {
        stats.coordinatedAnswers++
        return { result: waited.result }
      }
      lastRound = (waited.kind === 'retry' && waited.timedOut === true) || round >= MAX_WAIT_ROUNDS
    }
  }

  /**
   * Gives the lease back, handing `result` to waiting instances (a value that was not cached). When the
   * lease was lost meanwhile (expired, maybe taken over), another holder may have written a newer value
   * before this one's write-back landed: what this load wrote is removed from every layer and every
   * instance's memory. Over-invalidating is the safe side.
   */
  async release(
    full: string,
    lease: SingleFlightLease,
    result: SingleFlightResult | undefined,
    wrote: boolean,
  ): Promise<void> {
    let held: boolean
    try {
      held = await lease.release(result)
    } catch (error) {
      this.failed(full, 'release', error)
      held = lease.held
    }
    if (held) return
    this.state.stats.leasesLost++
    if (wrote) await this.removeEverywhere(full)
  }

  private async removeEverywhere(full: string): Promise<void> {
    const state = this.state
    // Reads in flight here must not copy the value back into memory.
    state.gate.forget([full], false)
    await Promise.all(
      state.layers.map(async (layer, i) => {
        try {
          await layer.delete(full)
        } catch (error) {
          state.layerFailed(i, 'delete', full, error, 'bypass')
        }
      }),
    )
    // A read that began while the shared layers were removing it may have copied it back into memory.
    state.gate.forget([full])
    // Other instances may have copied it into memory already; a failed announcement is counted there.
    await state.bus?.announce([{ keys: [full] }]).catch(() => {})
  }

  private withoutLease(full: string, operation: string, error: unknown): Turn {
    if (error !== undefined) this.failed(full, operation, error)
    this.state.stats.uncoordinatedLoads++
    return { lease: undefined }
  }

  private failed(full: string, operation: string, error: unknown): void {
    const state = this.state
    state.stats.coordinatorErrors++
    if (state.events.listening('error')) {
      state.events.emit('error', {
        operation,
        layer: 'singleFlightCoordinator',
        key: full,
        error,
        handled: true,
      })
    }
  }
}
