// A tiny worker for worker-process.test.ts, started with forkWorker().
import { serveWorker } from '../../src/worker-process'

export interface CalcInit {
  readonly offset: number
  /** Makes the factory throw, so forkWorker() rejects. */
  readonly failStart?: boolean
  /** Makes close() throw, so stop() rejects. */
  readonly failClose?: boolean
}

export interface CalcApi {
  add(a: number, b: number): number
  /** Resolves after a macrotask, so async methods are covered too. */
  addLater(a: number, b: number): Promise<number>
  fail(message: string): never
  /** Emits `event` with `data` once this call has returned. */
  emitSoon(event: string, data: unknown): void
  /** Never settles: for kill() while a call is pending. */
  hang(): Promise<never>
  echo<T>(value: T): T
  pid(): number
  close(): void
}

class CodedError extends Error {
  override readonly name = 'CodedError'
  readonly code = 'E_CALC'
}

serveWorker<CalcApi, CalcInit>((init, emit) => {
  if (init.failStart) throw new RangeError('no API today')
  return {
    add: (a, b) => a + b + init.offset,
    addLater: (a, b) => new Promise((resolve) => setImmediate(() => resolve(a + b + init.offset))),
    fail: (message) => {
      throw new CodedError(message)
    },
    emitSoon: (event, data) => void setImmediate(() => emit(event, data)),
    hang: () => new Promise<never>(() => {}),
    echo: (value) => value,
    pid: () => process.pid,
    close: () => {
      emit('closing', { pid: process.pid })
      if (init.failClose) throw new Error('close failed')
    },
  }
})
