import { assertKnownOptions, assertPositiveInteger } from './validation'

export interface GracefulDegradationOptions {
  /** How long an open circuit skips the layer before one probe call is let through. Default 10 000 ms. */
  readonly retryAfterMs?: number
  /** Consecutive failures that open the circuit. Default 5. */
  readonly failureThreshold?: number
}

export type CircuitState = 'closed' | 'open' | 'half-open'

export const DEFAULT_RETRY_AFTER_MS = 10_000
export const DEFAULT_FAILURE_THRESHOLD = 5
const DEGRADATION_OPTIONS = ['retryAfterMs', 'failureThreshold'] as const

export interface CircuitBreakerOptions {
  readonly failureThreshold: number
  readonly retryAfterMs: number
  /** Milliseconds; injectable for tests. Default Date.now (so CircuitOpenError.retryAt is a timestamp). */
  readonly now?: () => number
  /** Called on every transition, after the state changed. */
  readonly onChange?: (state: CircuitState) => void
}

/** Validates the stack's `gracefulDegradation` option and fills in the defaults; undefined when absent. */
export function readDegradationOption(
  value: GracefulDegradationOptions | undefined,
): Required<GracefulDegradationOptions> | undefined {
  if (value === undefined) return undefined
  assertKnownOptions(value, DEGRADATION_OPTIONS, 'gracefulDegradation')
  return {
    retryAfterMs:
      assertPositiveInteger(value.retryAfterMs, 'gracefulDegradation.retryAfterMs') ?? DEFAULT_RETRY_AFTER_MS,
    failureThreshold:
      assertPositiveInteger(value.failureThreshold, 'gracefulDegradation.failureThreshold') ??
      DEFAULT_FAILURE_THRESHOLD,
  }
}

/** What `enter` returns when the call must not be made. */
export const REFUSED = -1

/**
 * The circuit breaker of one remote layer. Closed: calls go through and `failureThreshold` consecutive
 * failures open it. Open: calls are refused until `retryAfterMs` has passed; the first call after that
 * moves it to half-open and is the one probe let through (the others are still refused). The probe's
 * success closes the circuit, its failure opens it again for `retryAfterMs`.
 *
 * Time only moves the state when a call arrives: no timer runs, and an idle layer has nothing to recover.
 * Each call gets a permit (the state's epoch) and reports its outcome with it, so a slow call issued
 * before a transition cannot close or reopen the circuit afterwards.
 */
export class CircuitBreaker {
  private current: CircuitState = 'closed'
  private epoch = 0
  private failures = 0
  /** While open: when the probe may go. While half-open: when a probe that never answered is given up. */
  private until = 0
  private probing = false
  private readonly now: () => number

  constructor(private readonly options: CircuitBreakerOptions) {
    this.now = options.now ?? (() => Date.now())
  }

  get state(): CircuitState {
    return this.current
  }

  /** When calls may be let through again (a timestamp of the clock); now when the circuit is closed. */
  get retryAt(): number {
    return this.current === 'closed' ? this.now() : this.until
  }

  /** A permit for one call, or REFUSED when the call must fail fast without being made. */
  enter(): number {
    if (this.current === 'closed') return this.epoch
    const now = this.now()
    if (this.current === 'open') {
      if (now < this.until) return REFUSED
      this.moveTo('half-open')
    } else if (this.probing && now < this.until) {
      return REFUSED
    }
    // Layers must bound their calls with a timeout; should one not, a silent probe is given up on after
    // retryAfterMs rather than keeping the layer switched off for good.
    this.probing = true
    this.until = now + this.options.retryAfterMs
    return this.epoch
  }

  /** The call answered: the layer works. */
  succeeded(permit: number): void {
    if (permit !== this.epoch) return
    if (this.current === 'half-open') this.moveTo('closed')
    else this.failures = 0
  }

  /** The call failed because the layer could not answer (down, timed out). */
  failed(permit: number): void {
    if (permit !== this.epoch) return
    if (this.current === 'half-open' || ++this.failures >= this.options.failureThreshold) {
      this.moveTo('open')
    }
  }

  /** The call ended in a way that says nothing about the layer's health (e.g. input it refused). */
  released(permit: number): void {
    if (permit === this.epoch && this.current === 'half-open') this.probing = false
  }

  private moveTo(state: CircuitState): void {
    this.current = state
    this.epoch++
    this.failures = 0
    this.probing = false
    if (state === 'open') this.until = this.now() + this.options.retryAfterMs
    this.options.onChange?.(state)
  }
}
