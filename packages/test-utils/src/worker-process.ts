// Runs code in separate Node processes with typed RPC over IPC: forkWorker() in the test, serveWorker() in
// the worker module. Worker modules import this file through `@layercache/test-utils/worker-process`; it
// must never import vitest, since workers run outside of it.
import { type ChildProcess, fork } from 'node:child_process'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { basename } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { trackChild } from './child-registry'

type Method = (...args: never[]) => unknown

/** The names of Api's methods. */
export type WorkerMethodName<Api> = { [K in keyof Api]: Api[K] extends Method ? K : never }[keyof Api] &
  string
export type WorkerArgs<F> = F extends (...args: infer A) => unknown ? A : never
export type WorkerResult<F> = F extends (...args: never[]) => infer R ? Awaited<R> : never
export type WorkerEmit = (event: string, data?: unknown) => void

export interface WorkerExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface SerializedError {
  readonly name: string
  readonly message: string
  readonly code?: string | number | undefined
  readonly stack?: string | undefined
}

/** An error thrown in the worker, rebuilt in the test process with the worker's name, message and code. */
export class WorkerError extends Error {
  override readonly name: string
  readonly code: string | number | undefined
  /** The stack in the worker; `stack` is the one of the test process. */
  readonly workerStack: string | undefined

  constructor(error: SerializedError) {
    super(error.message)
    this.name = error.name
    this.code = error.code
    this.workerStack = error.stack
  }
}

/** A call, event wait or start that was still waiting when the worker process exited. */
export class WorkerExitedError extends Error {
  override readonly name = 'WorkerExitedError'
}

export interface WorkerHandle<Api> {
  readonly pid: number
  /** False once the process has exited. */
  readonly running: boolean
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<WorkerExit>
  /** The last few KB of the worker's stdout and stderr. */
  readonly output: string
  /**
   * Runs `method` in the worker. Arguments and result cross by structured clone (no functions, class
   * instances arrive as plain objects). Rejects with a WorkerError if the method throws, and with a
   * WorkerExitedError if the process exits first.
   */
  call<K extends WorkerMethodName<Api>>(method: K, ...args: WorkerArgs<Api[K]>): Promise<WorkerResult<Api[K]>>
  /** Listens to events the worker emits; returns the unsubscribe function. */
  on(event: string, listener: (data: unknown) => void): () => void
  /** The data of the next `event`; rejects with a WorkerExitedError if the process exits first. */
  nextEvent(event: string): Promise<unknown>
  /** Sends `signal` and waits for the process to exit (so pending calls have been rejected). */
  kill(signal?: NodeJS.Signals): Promise<WorkerExit>
  /**
   * Asks the worker to run its API's `close` method, if any, and exit; SIGKILL after `timeoutMs`. Rejects
   * with the WorkerError if close threw (after the process exited). Idempotent.
   */
  stop(timeoutMs?: number): Promise<WorkerExit>
}

export interface ForkWorkerOptions {
  /** How long the worker may take to import its module and run its factory. Default 20 s. */
  readonly readyTimeoutMs?: number
  readonly cwd?: string
  /** Added to the test process's environment. */
  readonly env?: Readonly<Record<string, string>>
}

type ToWorker =
  | { readonly type: 'worker:init'; readonly init: unknown }
  | { readonly type: 'worker:call'; readonly id: number; readonly method: string; readonly args: unknown[] }
  | { readonly type: 'worker:stop' }

type FromWorker =
  | { readonly type: 'worker:hello' }
  | { readonly type: 'worker:ready' }
  | { readonly type: 'worker:failed'; readonly error: SerializedError }
  | { readonly type: 'worker:result'; readonly id: number; readonly value: unknown }
  | { readonly type: 'worker:error'; readonly id: number; readonly error: SerializedError }
  | { readonly type: 'worker:event'; readonly event: string; readonly data: unknown }
  | { readonly type: 'worker:stopped'; readonly error: SerializedError | undefined }

const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000
const OUTPUT_TAIL_CHARS = 4000
// 'close' (IPC and output fully read) follows 'exit' unless a grandchild inherited the worker's pipes.
const CLOSE_AFTER_EXIT_MS = 1000

function isProtocolMessage<M extends { type: string }>(message: unknown): message is M {
  const type = (message as { type?: unknown } | null)?.type
  return typeof type === 'string' && type.startsWith('worker:')
}

function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) }
  const code = (error as { code?: unknown }).code
  return {
    name: error.name,
    message: error.message,
    code: typeof code === 'string' || typeof code === 'number' ? code : undefined,
    stack: error.stack,
  }
}

/** With LAYERCACHE_TEST_IOREDIS set (scripts/test-ioredis6.mjs), the worker loads that ioredis too. */
function ioredisOverride(): string[] {
  if (!process.env.LAYERCACHE_TEST_IOREDIS) return []
  return ['--import', new URL('./ioredis-override.mjs', import.meta.url).href]
}

function tsxLoader(): string {
  // Absolute, so the worker's cwd does not matter; tsx is a root devDependency of the monorepo.
  try {
    return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  } catch {
    return 'tsx'
  }
}

interface Waiter {
  resolve(value: unknown): void
  reject(error: Error): void
}

class ForkedWorker<Api> implements WorkerHandle<Api> {
  readonly pid: number
  readonly exited: Promise<WorkerExit>
  readonly #child: ChildProcess
  readonly #label: string
  readonly #init: unknown
  readonly #calls = new Map<number, Waiter & { readonly method: string }>()
  readonly #listeners = new Map<string, Set<(data: unknown) => void>>()
  #starting: Waiter | undefined
  #exit: WorkerExit | undefined
  #resolveExited: (exit: WorkerExit) => void = () => {}
  #output = ''
  #nextId = 1
  #holds = 0
  #closeError: WorkerError | undefined
  #stopping: Promise<WorkerExit> | undefined

  constructor(child: ChildProcess, modulePath: string, init: unknown) {
    this.#child = child
    this.pid = child.pid ?? -1
    this.#label = `worker ${basename(modulePath)} (pid ${this.pid})`
    this.#init = init
    this.exited = new Promise((resolve) => {
      this.#resolveExited = resolve
    })
    const collect = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS)
    }
    child.stdout?.on('data', collect)
    child.stderr?.on('data', collect)
    child.on('message', (message: unknown) => {
      if (isProtocolMessage<FromWorker>(message)) this.#receive(message)
    })
    child.on('error', (error) => {
      // Only a failed spawn matters here; failed sends are reported to their callbacks.
      if (child.pid === undefined) this.#finish({ code: null, signal: null }, error)
    })
    child.once('exit', (code, signal) => {
      const exit = { code, signal }
      const timer = setTimeout(() => this.#finish(exit), CLOSE_AFTER_EXIT_MS)
      child.once('close', () => {
        clearTimeout(timer)
        this.#finish(exit)
      })
    })
    // Only pending work keeps the test process alive (see #hold); child-registry kills forgotten workers.
    this.#setRef(false)
    ;(child.stdout as Socket | null)?.unref()
    ;(child.stderr as Socket | null)?.unref()
  }

  get running(): boolean {
    return this.#exit === undefined
  }

  get output(): string {
    return this.#output
  }

  start(timeoutMs: number): Promise<void> {
    const release = this.#hold()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#starting = undefined
        release()
        void this.kill()
        reject(new Error(`${this.#label} was not ready within ${timeoutMs} ms. Output:\n${this.#output}`))
      }, timeoutMs)
      this.#starting = {
        resolve: () => {
          clearTimeout(timer)
          release()
          resolve()
        },
        reject: (error) => {
          clearTimeout(timer)
          release()
          void this.kill()
          reject(error)
        },
      }
    })
  }

  call<K extends WorkerMethodName<Api>>(
    method: K,
    ...args: WorkerArgs<Api[K]>
  ): Promise<WorkerResult<Api[K]>> {
    if (this.#exit) return Promise.reject(this.#exitedError(this.#exit, `${method}() was called`))
    return new Promise((resolve, reject) => {
      const id = this.#nextId++
      const release = this.#hold()
      this.#calls.set(id, {
        method,
        resolve: (value) => {
          release()
          resolve(value as WorkerResult<Api[K]>)
        },
        reject: (error) => {
          release()
          reject(error)
        },
      })
      this.#send({ type: 'worker:call', id, method, args }, (error) => this.#takeCall(id)?.reject(error))
    })
  }

  on(event: string, listener: (data: unknown) => void): () => void {
    let listeners = this.#listeners.get(event)
    if (!listeners) {
      listeners = new Set()
      this.#listeners.set(event, listeners)
    }
    const wrapped = (data: unknown) => listener(data)
    listeners.add(wrapped)
    return () => void listeners.delete(wrapped)
  }

  nextEvent(event: string): Promise<unknown> {
    if (this.#exit) return Promise.reject(this.#exitedError(this.#exit, `waiting for event "${event}"`))
    return new Promise((resolve, reject) => {
      const release = this.#hold()
      let settled = false
      const off = this.on(event, (data) => {
        if (settled) return
        settled = true
        off()
        release()
        resolve(data)
      })
      void this.exited.then((exit) => {
        if (settled) return
        settled = true
        off()
        release()
        reject(this.#exitedError(exit, `waiting for event "${event}"`))
      })
    })
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<WorkerExit> {
    if (this.#exit) return this.#exit
    const release = this.#hold()
    try {
      this.#child.kill(signal)
      return await this.exited
    } finally {
      release()
    }
  }

  stop(timeoutMs = STOP_TIMEOUT_MS): Promise<WorkerExit> {
    this.#stopping ??= (async () => {
      if (this.#exit) return this.#exit
      const release = this.#hold()
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs)
      try {
        this.#send({ type: 'worker:stop' })
        const exit = await this.exited
        if (this.#closeError) throw this.#closeError
        return exit
      } finally {
        clearTimeout(timer)
        release()
      }
    })()
    return this.#stopping
  }

  #receive(message: FromWorker): void {
    switch (message.type) {
      case 'worker:hello':
        this.#send({ type: 'worker:init', init: this.#init }, (error) => this.#starting?.reject(error))
        return
      case 'worker:ready':
        this.#starting?.resolve(undefined)
        this.#starting = undefined
        return
      case 'worker:failed': {
        const cause = new WorkerError(message.error)
        const error = new Error(`${this.#label} failed to start: ${cause.name}: ${cause.message}`, { cause })
        this.#starting?.reject(error)
        this.#starting = undefined
        return
      }
      case 'worker:result':
        this.#takeCall(message.id)?.resolve(message.value)
        return
      case 'worker:error':
        this.#takeCall(message.id)?.reject(new WorkerError(message.error))
        return
      case 'worker:event':
        for (const listener of [...(this.#listeners.get(message.event) ?? [])]) listener(message.data)
        return
      case 'worker:stopped':
        if (message.error) this.#closeError = new WorkerError(message.error)
        return
    }
  }

  #send(message: ToWorker, onError?: (error: Error) => void): void {
    const fail = (error: unknown) => onError?.(error instanceof Error ? error : new Error(String(error)))
    try {
      this.#child.send(message, (error) => {
        if (error) fail(error)
      })
    } catch (error) {
      // e.g. a DataCloneError for an argument that structured clone cannot copy
      fail(error)
    }
  }

  #takeCall(id: number): Waiter | undefined {
    const call = this.#calls.get(id)
    this.#calls.delete(id)
    return call
  }

  #finish(exit: WorkerExit, spawnError?: Error): void {
    if (this.#exit) return
    this.#exit = exit
    this.#failPending(exit, spawnError)
    this.#resolveExited(exit)
  }

  #failPending(exit: WorkerExit, spawnError?: Error): void {
    if (this.#starting) {
      const starting = this.#starting
      this.#starting = undefined
      starting.reject(spawnError ?? this.#exitedError(exit, 'starting'))
    }
    for (const [id, call] of this.#calls) {
      this.#calls.delete(id)
      call.reject(this.#exitedError(exit, `${call.method}() was pending`))
    }
  }

  #exitedError(exit: WorkerExit, what: string): WorkerExitedError {
    const status = exit.signal ?? `code ${exit.code}`
    return new WorkerExitedError(`${this.#label} exited (${status}) while ${what}. Output:\n${this.#output}`)
  }

  #hold(): () => void {
    if (this.#holds++ === 0) this.#setRef(true)
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.#holds === 0) this.#setRef(false)
    }
  }

  #setRef(ref: boolean): void {
    if (ref) {
      this.#child.ref()
      this.#child.channel?.ref()
    } else {
      this.#child.unref()
      this.#child.channel?.unref()
    }
  }
}

/**
 * Forks `modulePath` (a path or file URL of a module that calls serveWorker) under tsx with the
 * `@layercache/source` condition, hands it `init` and resolves once its factory has built the API. Rejects,
 * with the worker's output, if the factory throws, the process exits or it is not ready in time.
 */
export async function forkWorker<Api, Init = unknown>(
  modulePath: string | URL,
  init: Init,
  opts: ForkWorkerOptions = {},
): Promise<WorkerHandle<Api>> {
  const path =
    modulePath instanceof URL || modulePath.startsWith('file:') ? fileURLToPath(modulePath) : modulePath
  const child = fork(path, [], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    execArgv: ['--conditions=@layercache/source', '--import', tsxLoader(), ...ioredisOverride()],
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  trackChild(child)
  const worker = new ForkedWorker<Api>(child, path, init)
  await worker.start(opts.readyTimeoutMs ?? READY_TIMEOUT_MS)
  return worker
}

/**
 * The worker side: call once at the top level of the worker module. Builds the API with `factory` (from
 * the `init` given to forkWorker; `emit` pushes events to the test process), serves calls to its methods
 * (concurrently) and, on stop(), awaits its `close` method if it has one and exits. The worker also exits
 * when the test process goes away. Events emitted before the factory returns may be missed.
 */
export function serveWorker<Api extends object, Init = unknown>(
  factory: (init: Init, emit: WorkerEmit) => Api | Promise<Api>,
): void {
  if (!process.send) throw new Error('serveWorker: no IPC channel; start this module with forkWorker()')
  const post = (message: FromWorker): Promise<Error | null> =>
    new Promise((resolve) => {
      try {
        process.send?.(message, undefined, {}, (error) => resolve(error))
      } catch (error) {
        resolve(error instanceof Error ? error : new Error(String(error)))
      }
    })
  const emit: WorkerEmit = (event, data) => {
    // Throws at once for data structured clone cannot copy; a closed channel is ignored.
    process.send?.({ type: 'worker:event', event, data } satisfies FromWorker, undefined, {}, () => {})
  }
  let api: Api | undefined
  let stopping = false

  const start = async (init: Init) => {
    try {
      api = await factory(init, emit)
    } catch (error) {
      await post({ type: 'worker:failed', error: serializeError(error) })
      process.exit(1)
    }
    await post({ type: 'worker:ready' })
  }

  const serve = async (id: number, method: string, args: unknown[]) => {
    try {
      const fn = Object.hasOwn(Object.prototype, method)
        ? undefined
        : (api as Record<string, unknown>)?.[method]
      if (typeof fn !== 'function') throw new TypeError(`the worker API has no method "${method}"`)
      const value = await fn.apply(api, args)
      const failed = await post({ type: 'worker:result', id, value })
      if (failed && process.connected) await post({ type: 'worker:error', id, error: serializeError(failed) })
    } catch (error) {
      await post({ type: 'worker:error', id, error: serializeError(error) })
    }
  }

  const stop = async () => {
    if (stopping) return
    stopping = true
    let error: SerializedError | undefined
    try {
      const close = (api as { close?: unknown } | undefined)?.close
      if (typeof close === 'function') await close.call(api)
    } catch (thrown) {
      error = serializeError(thrown)
    }
    // Exit only once the reply is written: process.exit() drops IPC messages still queued.
    await post({ type: 'worker:stopped', error })
    process.exit(error ? 1 : 0)
  }

  process.on('message', (message: unknown) => {
    if (!isProtocolMessage<ToWorker>(message)) return
    switch (message.type) {
      case 'worker:init':
        void start(message.init as Init)
        return
      case 'worker:call':
        void serve(message.id, message.method, message.args)
        return
      case 'worker:stop':
        void stop()
        return
    }
  })
  process.on('disconnect', () => process.exit(stopping ? 0 : 1))
  void post({ type: 'worker:hello' })
}
