// A history-checker instance in a process of its own (forked by the runner with forkWorker). It imports the
// library from `libraryUrl`, reaches the database of record in the runner over IPC, reports its loaders'
// reads as `load` events, and may run with its clock (Date.now) moved by `clockOffsetMs`.
// Like worker-process.ts, it must never import vitest.
import { serveWorker, type WorkerEmit } from '../worker-process'
import type { DatabaseClient } from './database'
import { type CacheLibrary, HistoryInstance, type InstanceConfig, type LoadReport } from './instance'
import type { Op } from './workload'

export interface HistoryWorkerInit {
  readonly config: InstanceConfig
  /** file: URL of the module exporting the library (the umbrella package's source). */
  readonly libraryUrl: string
  /** Moves this process's Date.now (not the history clock) by this many ms. */
  readonly clockOffsetMs?: number
}

/** A database request from a worker: answered by calling `dbReply(id, result)`. */
export interface DatabaseRequest {
  readonly id: number
  readonly op: 'read' | 'bump'
  readonly rows: readonly string[]
}

/** The database of record, over IPC: requests go out as `db` events, answers come back as calls. */
class IpcDatabase implements DatabaseClient {
  #nextId = 1
  readonly #waiting = new Map<number, (result: number[]) => void>()

  constructor(private readonly emit: WorkerEmit) {}

  async read(row: string): Promise<number> {
    const [version] = await this.#ask('read', [row])
    return version!
  }

  bump(rows: readonly string[]): Promise<number[]> {
    return this.#ask('bump', rows)
  }

  reply(id: number, result: number[]): void {
    this.#waiting.get(id)?.(result)
    this.#waiting.delete(id)
  }

  #ask(op: DatabaseRequest['op'], rows: readonly string[]): Promise<number[]> {
    const id = this.#nextId++
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve)
      this.emit('db', { id, op, rows: [...rows] } satisfies DatabaseRequest)
    })
  }
}

const start = async (init: HistoryWorkerInit, emit: WorkerEmit) => {
  if (init.clockOffsetMs) {
    const realNow = Date.now.bind(Date)
    const offset = init.clockOffsetMs
    Date.now = () => realNow() + offset
  }
  const library = (await import(init.libraryUrl)) as CacheLibrary
  const db = new IpcDatabase(emit)
  const instance = await HistoryInstance.start(init.config, library, db, (report: LoadReport) =>
    emit('load', report),
  )
  return {
    perform: (op: Op) => instance.perform(op),
    peekMemory: (keys: readonly string[], entityIds: readonly string[]) =>
      instance.peekMemory(keys, entityIds),
    quiet: () => ({ loading: instance.loading, inFlight: instance.latency.inFlight, ...instance.busState() }),
    dbReply: (id: number, result: number[]) => db.reply(id, result),
    close: () => instance.close(),
  }
}

export type HistoryWorkerApi = Awaited<ReturnType<typeof start>>

serveWorker(start)
