import { CacheClosedError, InvalidOptionError } from './errors'
import { assertKnownOptions } from './validation'

export interface CloseOptions {
  /**
   * How long (ms) loads still running when `close()` is called — background refreshes, warmer refills,
   * loads callers are waiting for — may go on to finish and write their values back. Whatever is still
   * running then is abandoned: its loader's `ctx.signal` is aborted with a CacheClosedError and its
   * write-back is dropped. Default 10 000; 0 abandons at once.
   */
  readonly abandonAfter?: number
}
const CLOSE_OPTIONS = ['abandonAfter'] as const
const DEFAULT_ABANDON_AFTER_MS = 10_000

/** What closing does to the rest of the stack, in this order (see Lifecycle.close). */
export interface ClosingSteps {
  /** No warmer refill starts any more. */
  stopWarmers(): void
  /** Empties the in-process layers; with `fence`, also refuses the write-back of everything in flight. */
  forgetMemory(fence: boolean): void
  /** Detaches from the bus and closes it and the coordinator; failures are reported, not thrown. */
  closeDistribution(): Promise<void>
}

interface RunningLoad {
  readonly controller: AbortController
  readonly done: Promise<unknown>
}

/** Validates close()'s options (bad input throws before anything closes). */
export function readCloseOptions(options: CloseOptions | undefined): number {
  assertKnownOptions(options, CLOSE_OPTIONS, 'close')
  const after = options?.abandonAfter
  if (after === undefined) return DEFAULT_ABANDON_AFTER_MS
  if (typeof after !== 'number' || !Number.isFinite(after) || after < 0) {
    throw new InvalidOptionError(`close: abandonAfter must be a number of ms ≥ 0, got ${String(after)}`)
  }
  return after
}

/**
 * Whether a stack is open, and the loads it runs, so that closing can let them finish or abandon them.
 * One per stack, shared with its namespace views. Holds only loads in progress (each leaves as it
 * settles), so it is bounded by the loads running at once.
 */
export class Lifecycle {
  private closing: Promise<void> | undefined
  private readonly running = new Set<RunningLoad>()

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.closing !== undefined
  }

  /** Throws CacheClosedError once `close()` was called. */
  assertOpen(): void {
    if (this.closing !== undefined) throw new CacheClosedError('CacheStack')
  }

  /** A load started; kept until `done` settles. Its loader's signal is `controller`'s. */
  track(controller: AbortController, done: Promise<unknown>): void {
    const load = { controller, done }
    this.running.add(load)
    const settled = () => this.running.delete(load)
    done.then(settled, settled)
  }

  /**
   * Closes once: new calls are refused from now on, warmers stop, memory is emptied (so hits stop too),
   * loads running get `abandonAfter` ms to finish, the rest are aborted and fenced, and the bus and
   * coordinator are closed last (loads finishing meanwhile still hear other instances' invalidations
   * and hold their fleet leases). Every later call answers the same promise.
   */
  close(steps: ClosingSteps, abandonAfter: number): Promise<void> {
    this.closing ??= this.closeNow(steps, abandonAfter)
    return this.closing
  }

  private async closeNow(steps: ClosingSteps, abandonAfter: number): Promise<void> {
    steps.stopWarmers()
    steps.forgetMemory(false)
    await this.finishOrAbandon(abandonAfter)
    // Anything still running is abandoned: its write-back is refused and memory is empty for good.
    steps.forgetMemory(true)
    await steps.closeDistribution()
  }

  /** Waits for the running loads up to `abandonAfter` ms, then aborts those still running. */
  private async finishOrAbandon(abandonAfter: number): Promise<void> {
    if (this.running.size > 0 && abandonAfter > 0) {
      let timer: NodeJS.Timeout | undefined
      const allDone = Promise.allSettled([...this.running].map((load) => load.done))
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, abandonAfter)
      })
      try {
        await Promise.race([allDone, deadline])
      } finally {
        clearTimeout(timer)
      }
    }
    for (const load of this.running) load.controller.abort(new CacheClosedError('CacheStack'))
  }
}
