import { InvalidOptionError } from './errors'

/**
 * What a call whose `signal` aborted rejects with: the signal's reason when it is an Error (what
 * `controller.abort()` and `AbortSignal.timeout()` give: a DOMException named AbortError or TimeoutError,
 * or the caller's own error), else a DOMException named AbortError carrying the reason as its `cause`.
 */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason
  return new DOMException('The operation was aborted', { name: 'AbortError', cause: reason })
}

/** The `signal` option checked: absent, or an AbortSignal. */
export function readSignal(signal: unknown, where: string): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal))
    throw new InvalidOptionError(`${where}: signal must be an AbortSignal`)
  return signal
}

/**
 * `work` unless `signal` aborts first: then the answer rejects at once with abortError(signal), and
 * `work` goes on without this caller (its outcome is still observed, so a late rejection is not
 * unhandled). `onAbort` runs once if the signal wins.
 */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal, onAbort?: () => void): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {})
    onAbort?.()
    return Promise.reject(abortError(signal))
  }
  return new Promise<T>((resolve, reject) => {
    const aborted = () => {
      onAbort?.()
      reject(abortError(signal))
    }
    signal.addEventListener('abort', aborted, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', aborted)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', aborted)
        reject(error)
      },
    )
  })
}

/** The callers waiting for one load that may all give up. */
interface Share {
  /** Callers with a signal still waiting. */
  open: number
  /** A caller without a signal waits too: the load is never abandoned. */
  pinned: boolean
  readonly full: string
  readonly controller: AbortController
}

/**
 * Who waits for each load, so that a load is stopped once nobody wants its answer. A load started by a
 * caller with a signal can be abandoned: when every caller waiting for it aborted, its loader's
 * `ctx.signal` aborts and it stops being the key's flight (the next caller starts afresh). A load
 * started without a signal (plain getOrSet, refresh, warm, a background refresh) never is: its callers
 * and its cache write-back still want it. Entries live in WeakMaps keyed by the load's promise, so they
 * go with it.
 */
export class Waiters {
  private readonly controllers = new WeakMap<Promise<unknown>, AbortController>()
  private readonly shares = new WeakMap<Promise<unknown>, Share>()

  constructor(private readonly flights: Map<string, Promise<unknown>>) {}

  /** A load began; `controller` aborts its loader's signal. */
  started(flight: Promise<unknown>, controller: AbortController): void {
    this.controllers.set(flight, controller)
  }

  /** The caller that started `flight` waits for it, with or without a signal. */
  first<T>(full: string, flight: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (signal === undefined) return flight
    const controller = this.controllers.get(flight)
    if (controller === undefined) return unlessAborted(flight, signal)
    const share: Share = { open: 1, pinned: false, full, controller }
    this.shares.set(flight, share)
    return unlessAborted(flight, signal, () => this.left(flight, share))
  }

  /** Another caller joins `flight`, with or without a signal. */
  join<T>(flight: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const share = this.shares.get(flight)
    if (signal === undefined) {
      if (share !== undefined) share.pinned = true
      return flight
    }
    if (share === undefined || share.pinned) return unlessAborted(flight, signal)
    share.open++
    return unlessAborted(flight, signal, () => this.left(flight, share))
  }

  private left(flight: Promise<unknown>, share: Share): void {
    share.open--
    if (share.open > 0 || share.pinned) return
    this.shares.delete(flight)
    // Nobody wants the answer any more: later callers start a load of their own.
    if (this.flights.get(share.full) === flight) this.flights.delete(share.full)
    share.controller.abort(
      new DOMException('Every caller waiting for this load aborted its signal', { name: 'AbortError' }),
    )
  }
}
