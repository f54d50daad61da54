// The runner of the history checker: runHistory({ seed, ... }) starts several app instances (in this
// process and in worker processes) over one Redis or a local Cluster, with injected latency on every data
// connection, drives a seeded random workload against them and a database of record, injects faults,
// brings everything to quiescence, looks into every layer and checks the recorded history against the
// model (checker.ts). It returns the violations; a regression test asserts there are none.
//
// Reproducibility: a seed fixes the operations of every client loop, every injected delay, every fault
// and its timing. The operating system still schedules processes, so two runs of one seed interleave
// alike but not identically: a violation found by a seed is usually found again by it, not always.
import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cluster, Redis } from 'ioredis'
import { forkWorker, type WorkerHandle } from '../worker-process'
import {
  type CheckName,
  countByCheck,
  HistoryChecker,
  LATE_WRITE_MS,
  lateWritesOf,
  type Violation,
} from './checker'
import { historyNow } from './clock'
import { RecordDatabase } from './database'
import { FaultInjector, type FaultOptions } from './faults'
import {
  type BusState,
  type CacheLibrary,
  HistoryInstance,
  type InstanceConfig,
  type MemoryPeek,
  type Observed,
  type OpOutcome,
} from './instance'
import type { CommandHold, LatencyMode } from './latency'
import { Prng } from './prng'
import { type History, type InstanceRecord, type Observation, Recorder } from './recorder'
import { type HistoryTarget, startHistoryTarget, type Topology } from './target'
import type { DatabaseRequest, HistoryWorkerApi, HistoryWorkerInit } from './worker'
import {
  describeOp,
  ENTITY_TYPE,
  entityRow,
  type KeyspaceOptions,
  keyspaceOf,
  type Op,
  type OpWeights,
  type UpdateOp,
  WEAK_UPDATES,
  Workload,
} from './workload'

export interface RunHistoryOptions {
  readonly seed: string | number
  /** Default 'standalone'. Ignored when `target` is given. */
  readonly topology?: Topology
  /** Servers to run on (several runs may share them; each run uses its own key prefix). */
  readonly target?: HistoryTarget
  /** Instances in this process. Default 3. */
  readonly instances?: number
  /** Share of updates with a read of a covered key racing them on the same instance. Default 0.3. */
  readonly raceProbability?: number
  /** At most this many reads of covered keys right after an update, on its instance. Default 2. */
  readonly followUps?: number
  /** Instances in worker processes. Default 1. */
  readonly processes?: number
  /** Client loops per instance, each running its operations one after the other. Default 3. */
  readonly concurrency?: number
  /** Operations in the whole run (spread over every loop). Default 300. */
  readonly ops?: number
  readonly weights?: OpWeights
  readonly keyspace?: KeyspaceOptions
  /** Injected before each command of the data connections. Default { maxMs: 3, mode: 'reorder' }. */
  readonly latency?: { readonly maxMs: number; readonly mode?: LatencyMode }
  /** Faults injected while the workload runs. Default none. */
  readonly faults?: FaultOptions
  /** Date.now offset (ms) of worker process i, e.g. { 0: 40_000 }. */
  readonly clockOffsets?: Readonly<Record<number, number>>
  /** RedisLayer / EntityCache / bus publish timeout, ms. Default 400. */
  readonly commandTimeout?: number
  /** The buses' heartbeat, ms. Default 1000 (the library's). */
  readonly heartbeatMs?: number
  /** Default 3 × heartbeatMs (the library's). */
  readonly heartbeatTimeoutMs?: number
  /** B of the model (delivery and reconnection), ms. Default 300. */
  readonly busBoundMs?: number
  /** B of the model around a paused Redis, ms. Default heartbeatTimeoutMs + heartbeatMs + 300. */
  readonly silentBoundMs?: number
  /**
   * Bursty traffic: every instance stops sending now and then (all its loops wait), so a lost bus message
   * is not revealed at once by the sender's next one, e.g. { every: [500, 1500], for: [100, 400] } ms.
   * Default: none (fewer overlapping calls find fewer races; pub/sub kills are timed anyway).
   */
  readonly quietPeriods?:
    | { readonly every: readonly [number, number]; readonly for: readonly [number, number] }
    | false
  /** (d): a call must settle within this, ms. Default 10 × commandTimeout + 2000. */
  readonly deadlineMs?: number
  /** Memory layer TTL, ms. Default 60 000. */
  readonly memoryTtlMs?: number
  /** gracefulDegradation on every stack. Default false. */
  readonly degrade?: boolean
  /** The library (default: the umbrella package's source, imported from `libraryUrl`). */
  readonly library?: CacheLibrary
  readonly libraryUrl?: string
  /** Progress lines (instances started, faults, quiescence). */
  readonly log?: (line: string) => void
}

export interface RunSummary {
  readonly calls: number
  readonly reads: number
  readonly updates: number
  readonly failed: number
  readonly loads: number
  readonly faults: number
  readonly durationMs: number
  /** The longest event-loop stall of this process during the run (a (b) violation near B may be one). */
  readonly maxEventLoopDelayMs: number
  readonly quiescent: boolean
  /** Bus counters of the instances alive at the end, summed: flushes by reason, rejections by reason. */
  readonly bus: { readonly unverified: Record<string, number>; readonly rejected: Record<string, number> }
}

export interface HistoryRun {
  readonly seed: string
  readonly topology: Topology
  readonly violations: readonly Violation[]
  readonly counts: Partial<Record<CheckName, number>>
  readonly history: History
  readonly summary: RunSummary
}

const DEFAULT_LIBRARY_URL = new URL('../../../layercache/src/index.ts', import.meta.url).href
const WORKER_URL = new URL('./worker.ts', import.meta.url)
const SECRET = 'history-checker-secret-0123456789'

interface QuietState extends BusState {
  readonly loading: number
  readonly inFlight: number
}

/** One instance as the runner drives it, in this process or in a worker. */
interface Driver {
  readonly name: string
  readonly record: InstanceRecord
  perform(op: Op): Promise<OpOutcome>
  peekMemory(keys: readonly string[], entityIds: readonly string[]): Promise<MemoryPeek>
  quiet(): Promise<QuietState>
  /** In this process only: holds its next bus publish back until released (see dropAround). */
  holdPublish?(): CommandHold
  kill(): Promise<void>
  close(): Promise<void>
}

/** Shared (strong updates) and exclusive (weak updates) locks on database rows, taken in row order. */
class RowLocks {
  readonly #rows = new Map<
    string,
    { readers: number; writer: boolean; queue: { exclusive: boolean; wake: () => void }[] }
  >()

  async acquire(rows: readonly string[], exclusive: boolean): Promise<() => void> {
    const sorted = [...new Set(rows)].sort()
    for (const row of sorted) await this.#take(row, exclusive)
    return () => {
      for (const row of sorted) this.#release(row, exclusive)
    }
  }

  #state(row: string) {
    let state = this.#rows.get(row)
    if (!state) {
      state = { readers: 0, writer: false, queue: [] }
      this.#rows.set(row, state)
    }
    return state
  }

  #take(row: string, exclusive: boolean): Promise<void> {
    const state = this.#state(row)
    const free = exclusive ? !state.writer && state.readers === 0 : !state.writer
    if (state.queue.length === 0 && free) {
      if (exclusive) state.writer = true
      else state.readers++
      return Promise.resolve()
    }
    return new Promise((wake) => state.queue.push({ exclusive, wake }))
  }

  #release(row: string, exclusive: boolean): void {
    const state = this.#state(row)
    if (exclusive) state.writer = false
    else state.readers--
    while (state.queue.length > 0) {
      const head = state.queue[0]!
      const free = head.exclusive ? !state.writer && state.readers === 0 : !state.writer
      if (!free) break
      state.queue.shift()
      if (head.exclusive) state.writer = true
      else state.readers++
      head.wake()
    }
  }
}

function inProcessDriver(instance: HistoryInstance, record: InstanceRecord): Driver {
  return {
    name: instance.name,
    record,
    perform: (op) => instance.perform(op),
    peekMemory: async (keys, ids) => instance.peekMemory(keys, ids),
    quiet: async () => ({
      loading: instance.loading,
      inFlight: instance.latency.inFlight,
      ...instance.busState(),
    }),
    holdPublish: () => instance.latency.holdNext(['publish', 'spublish']),
    kill: () => instance.close(),
    close: () => instance.close(),
  }
}

async function processDriver(
  init: HistoryWorkerInit,
  db: RecordDatabase,
  recorder: Recorder,
): Promise<Driver> {
  const worker: WorkerHandle<HistoryWorkerApi> = await forkWorker<HistoryWorkerApi, HistoryWorkerInit>(
    WORKER_URL,
    init,
  )
  const record = recorder.instanceStarted(init.config.name, true)
  worker.on('db', (data) => {
    const request = data as DatabaseRequest
    const result =
      request.op === 'read' ? request.rows.map((row) => db.version(row)) : db.bumpNow(request.rows)
    worker.call('dbReply', request.id, result).catch(() => {})
  })
  worker.on('load', (data) => recorder.load(data as Parameters<Recorder['load']>[0]))
  const failed = (error: unknown): OpOutcome => ({
    ok: false,
    error: `${(error as Error)?.name ?? 'Error'}: ${(error as Error)?.message ?? String(error)}`.slice(
      0,
      300,
    ),
  })
  return {
    name: init.config.name,
    record,
    perform: (op) => worker.call('perform', op).catch(failed),
    peekMemory: (keys, ids) => worker.call('peekMemory', keys, ids),
    quiet: () => worker.call('quiet'),
    kill: async () => {
      await worker.kill('SIGKILL')
      record.killed = true
      record.stopped = historyNow()
    },
    close: async () => {
      await worker.stop().catch(() => worker.kill())
      record.stopped ??= historyNow()
    },
  }
}

/** Runs one seeded history and checks it; see the file comment. */
export async function runHistory(options: RunHistoryOptions): Promise<HistoryRun> {
  const seed = String(options.seed)
  const random = new Prng(seed)
  const log = options.log ?? (() => {})
  const commandTimeout = options.commandTimeout ?? 400
  const heartbeatMs = options.heartbeatMs ?? 1000
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 3 * heartbeatMs
  const busBoundMs = options.busBoundMs ?? 300
  const silentBoundMs = options.silentBoundMs ?? heartbeatTimeoutMs + heartbeatMs + 300
  const bounds = { busBoundMs, silentBoundMs }
  const deadlineMs = options.deadlineMs ?? 10 * commandTimeout + 2000
  const libraryUrl = options.libraryUrl ?? DEFAULT_LIBRARY_URL
  const library = options.library ?? ((await import(libraryUrl)) as CacheLibrary)
  const keyspace = keyspaceOf(options.keyspace)
  const workload = new Workload(keyspace, options.weights)
  const ownTarget = options.target === undefined
  const target = options.target ?? (await startHistoryTarget(options.topology ?? 'standalone'))
  // Unique per run (runs of one seed may share servers), with the seed in it for whoever looks into Redis.
  const prefix = `h${seed.replace(/[^A-Za-z0-9]/g, '').slice(0, 20)}-${randomBytes(4).toString('hex')}:`
  const recorder = new Recorder(seed)
  const db = new RecordDatabase(historyNow)
  const locks = new RowLocks()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  const started = historyNow()

  const configOf = (name: string): InstanceConfig => ({
    name,
    topology: target.topology,
    ...(target.redisUrl === undefined ? {} : { redisUrl: target.redisUrl }),
    ...(target.clusterNodes === undefined ? {} : { clusterNodes: target.clusterNodes }),
    prefix,
    signingSecret: SECRET,
    heartbeatMs,
    heartbeatTimeoutMs,
    commandTimeout,
    latency: { maxMs: options.latency?.maxMs ?? 3, mode: options.latency?.mode ?? 'reorder' },
    seed: `${seed}:${name}`,
    memoryTtlMs: options.memoryTtlMs ?? 60_000,
    degrade: options.degrade ?? false,
  })
  const startInProcess = async (name: string): Promise<Driver> => {
    const instance = await HistoryInstance.start(configOf(name), library, db, (report) =>
      recorder.load(report),
    )
    return inProcessDriver(instance, recorder.instanceStarted(name, false))
  }
  const startProcess = (name: string, index: number): Promise<Driver> => {
    const offset = options.clockOffsets?.[index]
    return processDriver(
      { config: configOf(name), libraryUrl, ...(offset ? { clockOffsetMs: offset } : {}) },
      db,
      recorder,
    )
  }

  interface Slot {
    driver: Driver
    ready: Promise<void>
    /** Closed while the instance is in a quiet period. */
    gate: Promise<void>
    /** Operations of the workload running on it now. */
    active: number
    readonly idleWaiters: (() => void)[]
    readonly process: number | undefined
    replacements: number
  }
  const slots: Slot[] = []
  const observerClients: (Redis | Cluster)[] = []
  let quiescent = false
  try {
    const inProcess = options.instances ?? 3
    const processes = options.processes ?? 1
    const starting = await Promise.allSettled([
      ...Array.from({ length: inProcess }, (_, i) => startInProcess(`i${i}`)),
      ...Array.from({ length: processes }, (_, i) => startProcess(`p${i}`, i)),
    ])
    const drivers = starting.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
    const failure = starting.find((result) => result.status === 'rejected')
    if (failure) {
      await Promise.allSettled(drivers.map((driver) => driver.close()))
      throw failure.reason
    }
    for (const [i, driver] of drivers.entries()) {
      slots.push({
        driver,
        ready: Promise.resolve(),
        gate: Promise.resolve(),
        active: 0,
        idleWaiters: [],
        process: i < inProcess ? undefined : i - inProcess,
        replacements: 0,
      })
    }
    for (const [index, offset] of Object.entries(options.clockOffsets ?? {})) {
      const fault = recorder.fault(
        'clock-offset',
        `p${index} runs with Date.now ${offset >= 0 ? '+' : ''}${offset} ms`,
      )
      fault.end = Number.POSITIVE_INFINITY
    }
    log(`[history ${seed}] ${target.topology}: ${drivers.map((d) => d.name).join(', ')} on prefix ${prefix}`)

    // --- the workload, with faults alongside
    const concurrency = options.concurrency ?? 3
    const loops = slots.length * concurrency
    const perLoop = Math.ceil((options.ops ?? 300) / loops)
    let workloadDone = false
    const runOp = async (slot: Slot, op: Op): Promise<void> => {
      slot.active++
      try {
        await runOpOn(slot, op)
      } finally {
        if (--slot.active === 0) for (const wake of slot.idleWaiters.splice(0)) wake()
      }
    }
    const runOpOn = async (slot: Slot, op: Op): Promise<void> => {
      await slot.ready
      const driver = slot.driver
      const release =
        op.type === 'update' ? await locks.acquire(op.rows, WEAK_UPDATES.has(op.kind)) : () => {}
      try {
        const call = recorder.begin(driver.name, op, deadlineMs)
        const done = driver.perform(op).then(
          (outcome) => {
            recorder.end(call, outcome)
            if (op.type === 'update' && op.race !== undefined && outcome.race !== undefined) {
              recorder.within(call, op.race, outcome.race)
            }
          },
          (error: unknown) => recorder.end(call, { ok: false, error: String(error) }),
        )
        await Promise.race([done, sleep(deadlineMs + 1000)])
      } finally {
        release()
      }
    }
    const killInstance = async (pick: Prng): Promise<string | undefined> => {
      const candidates = slots.filter((slot) => slot.process !== undefined)
      if (candidates.length === 0) return undefined
      const slot = pick.pick(candidates)
      await slot.ready
      const victim = slot.driver
      let replaced!: () => void
      slot.ready = new Promise((resolve) => {
        replaced = resolve
      })
      await victim.kill()
      slot.replacements++
      const name = `p${slot.process}r${slot.replacements}`
      try {
        slot.driver = await startProcess(name, slot.process!)
      } finally {
        replaced()
      }
      log(`[history ${seed}] killed ${victim.name}, started ${name}`)
      return victim.name
    }
    // Quiet periods: an instance's loops wait at their next operation until every period on it ended.
    const stopPacing = new AbortController()
    setMaxListeners(Number.POSITIVE_INFINITY, stopPacing.signal)
    const quietFor = (slot: Slot, ms: number): Promise<void> => {
      const period = sleep(ms, undefined, { signal: stopPacing.signal }).catch(() => {})
      slot.gate = Promise.all([slot.gate, period]).then(() => {})
      return period
    }
    const injector = new FaultInjector(
      options.faults ?? { kinds: [] },
      target,
      recorder,
      random.fork('faults'),
      {
        killInstance,
        // After Redis restarted, half the instances go quiet: a message they sent while others were
        // reconnecting is not revealed as lost by their next one (see quietPeriods; kills: dropAround).
        afterFault: (kind, pick) => {
          if (kind !== 'restart-empty') return
          for (const slot of pick.sample(slots, Math.ceil(slots.length / 2)))
            void quietFor(slot, pick.between(300, 800))
        },
        // A drop while one message is on its way and nothing else is sent: the others cache a key, every
        // workload loop waits, one instance deletes the key and its message leaves right after the pub/sub
        // connections were killed, before they are back; once B has passed the others read the key again.
        // A lost message is revealed by the sender's next one, so with other traffic the loss would be
        // caught by accident; here only the bus noticing the drop (or the heartbeat, later) can catch it.
        dropAround: async (pick, drop) => {
          const candidates = slots.filter((slot) => slot.driver.holdPublish !== undefined)
          if (candidates.length === 0) {
            await drop()
            return
          }
          const sender = pick.pick(candidates)
          const opens: (() => void)[] = []
          for (const slot of slots) {
            const closed = new Promise<void>((resolve) => opens.push(resolve))
            slot.gate = Promise.all([slot.gate, closed]).then(() => {})
          }
          try {
            // Every loop finishes what it is doing and waits at its gate (bounded, like every call).
            await Promise.race([
              Promise.all(
                slots.map((slot) =>
                  slot.active === 0
                    ? undefined
                    : new Promise<void>((resolve) => slot.idleWaiters.push(resolve)),
                ),
              ),
              sleep(deadlineMs),
            ])
            const probe = workload.probe(pick)
            const others = slots.filter((slot) => slot !== sender)
            await Promise.all(others.map((other) => runOpOn(other, probe.warm)))
            const hold = sender.driver.holdPublish!()
            const probing = runOpOn(sender, probe.invalidate)
            await Promise.race([hold.reached, probing, sleep(deadlineMs)])
            try {
              const fault = await drop()
              fault.detail += `, while ${sender.driver.name} ${describeOp(probe.invalidate)} published`
            } finally {
              hold.release()
            }
            await probing
            await sleep(busBoundMs + 20)
            await Promise.all(others.map((other) => runOpOn(other, probe.look)))
          } finally {
            for (const open of opens) open()
          }
        },
      },
    )
    const loopsDone = Promise.all(
      slots.flatMap((slot, s) =>
        Array.from({ length: concurrency }, async (_, j) => {
          const ops = random.fork(`ops:${s}:${j}`)
          for (let i = 0; i < perLoop; i++) {
            await slot.gate
            const op = workload.next(ops)
            if (op.type === 'read') {
              await runOp(slot, op)
              continue
            }
            const update = workload.withRace(op, ops, options.raceProbability ?? 0.3)
            const followUps = workload.followUps(update, ops, options.followUps ?? 2)
            await runOp(slot, update)
            for (const read of followUps) await runOp(slot, read)
          }
        }),
      ),
    ).finally(() => {
      workloadDone = true
    })
    const faultsDone = injector.run(() => workloadDone)
    const quiet = options.quietPeriods === false ? undefined : options.quietPeriods
    const pacers = quiet
      ? slots.map(async (slot, s) => {
          const pace = random.fork(`quiet:${s}`)
          while (!stopPacing.signal.aborted) {
            await sleep(pace.between(quiet.every[0], quiet.every[1]), undefined, {
              signal: stopPacing.signal,
            }).catch(() => {})
            if (!stopPacing.signal.aborted) await quietFor(slot, pace.between(quiet.for[0], quiet.for[1]))
          }
        })
      : []
    await loopsDone
    stopPacing.abort()
    await Promise.all(pacers)
    await faultsDone
    log(
      `[history ${seed}] workload done: ${recorder.calls.length} calls in ${(historyNow() - started).toFixed(0)} ms`,
    )

    // --- heal, settle, repair, quiesce
    await target.heal()
    await Promise.race([recorder.settled(), sleep(deadlineMs + 1000)])
    const live = () => slots.map((slot) => slot.driver)
    const quiesce = async (timeoutMs: number): Promise<boolean> => {
      const until = historyNow() + timeoutMs
      for (;;) {
        const states = await Promise.all(live().map((driver) => driver.quiet().catch(() => undefined)))
        const quiet = states.every(
          (state) =>
            state && state.loading === 0 && state.inFlight === 0 && state.healthy && state.entityHealthy,
        )
        if (quiet) return true
        if (historyNow() > until) return false
        await sleep(5)
      }
    }
    await quiesce(silentBoundMs + 5000)
    // A failed overwrite may still be applied until a while after it failed around a stall (see the
    // model): the repairs begin after that, so that they come after it.
    const lateUntil = Math.max(
      0,
      ...lateWritesOf(recorder.calls, recorder.faults, LATE_WRITE_MS)
        .map((late) => late.until)
        .filter(Number.isFinite),
    )
    if (lateUntil > historyNow()) await sleep(lateUntil - historyNow())
    const repairer = slots[0]!.driver
    for (let attempt = 0; attempt < 5; attempt++) {
      const repairs = repairsNeeded(recorder, db, LATE_WRITE_MS)
      if (repairs.length === 0) break
      for (const op of repairs) await runOp(slots[0]!, op)
      log(
        `[history ${seed}] repaired ${repairs.map((op) => op.rows.join('+')).join(', ')} on ${repairer.name}`,
      )
    }
    quiescent = await quiesce(silentBoundMs + 5000)

    // --- (c): every layer of every instance, polled until it holds, at most B + 2 s
    const checker = new HistoryChecker(recorder.history(db.writes, currentOf(db), []), bounds)
    const observer = target.connect()
    observerClients.push(observer)
    let final: Observation[] = []
    const pollUntil = historyNow() + busBoundMs + 2000
    for (;;) {
      final = await observeEverything(library, observer, prefix, commandTimeout, live(), keyspace)
      if (checker.checkObservations(final).length === 0 || historyNow() > pollUntil) break
      await sleep(10)
    }
    // Then every instance reads every key once, as an app would (checked like any read).
    await Promise.all(
      slots.map(async (slot) => {
        for (const key of keyspace.keys)
          await runOp(slot, {
            type: 'read',
            kind: 'get',
            keys: [key],
            rows: [key],
            loader: { before: 0, after: 0 },
          })
        for (const id of keyspace.entityIds)
          await runOp(slot, {
            type: 'read',
            kind: 'getEntity',
            keys: [id],
            rows: [entityRow(id)],
            loader: { before: 0, after: 0 },
          })
      }),
    )

    const bus = { unverified: {} as Record<string, number>, rejected: {} as Record<string, number> }
    for (const state of await Promise.all(live().map((driver) => driver.quiet().catch(() => undefined)))) {
      for (const [into, from] of [
        [bus.unverified, state?.unverified ?? {}],
        [bus.rejected, state?.rejected ?? {}],
      ] as const) {
        for (const [reason, count] of Object.entries(from)) into[reason] = (into[reason] ?? 0) + count
      }
    }
    const history = recorder.history(db.writes, currentOf(db), final)
    const violations = new HistoryChecker(history, bounds).check()
    const calls = recorder.calls
    const summary: RunSummary = {
      calls: calls.length,
      reads: calls.filter((call) => call.op.type === 'read').length,
      updates: calls.filter((call) => call.op.type === 'update').length,
      failed: calls.filter((call) => call.outcome?.ok === false).length,
      loads: recorder.loads.length,
      faults: recorder.faults.length,
      durationMs: historyNow() - started,
      maxEventLoopDelayMs: delay.max / 1e6,
      quiescent,
      bus,
    }
    log(
      `[history ${seed}] ${summary.calls} calls (${summary.failed} failed), ${summary.faults} faults, ` +
        `${violations.length} violations, ${summary.durationMs.toFixed(0)} ms`,
    )
    return { seed, topology: target.topology, violations, counts: countByCheck(violations), history, summary }
  } finally {
    delay.disable()
    await target.heal().catch(() => {})
    await Promise.allSettled(slots.map((slot) => slot.driver.close()))
    for (const client of observerClients) client.disconnect()
    if (ownTarget) await target.stop()
  }
}

function currentOf(db: RecordDatabase): Record<string, number> {
  return Object.fromEntries(db.snapshot())
}

/**
 * Updates to run at the end so that every row's last database write was followed by an invalidation that
 * resolved: a delete of every row whose current version was written by an update that failed or hung, and
 * of every row a failed overwrite may have been applied to after the updates that followed it (the model:
 * "Failed overwrites may still land") unless an update began after that.
 */
function repairsNeeded(recorder: Recorder, db: RecordDatabase, lateWriteMs: number): UpdateOp[] {
  const stale: string[] = []
  for (const late of lateWritesOf(recorder.calls, recorder.faults, lateWriteMs)) {
    const overtaken = recorder.calls.some(
      (call) =>
        call.op.type === 'update' &&
        call.outcome?.ok === true &&
        call.start > late.until &&
        call.op.rows.includes(late.row),
    )
    if (!overtaken && !stale.includes(late.row)) stale.push(late.row)
  }
  for (const [row, version] of db.snapshot()) {
    if (stale.includes(row)) continue
    const wrote = recorder.calls.find(
      (call) =>
        call.op.type === 'update' &&
        call.outcome?.ok === true &&
        call.op.rows.some(
          (r, i) => r === row && call.outcome?.ok === true && call.outcome.versions?.[i] === version,
        ),
    )
    if (!wrote) stale.push(row)
  }
  const keys = stale.filter((row) => !row.startsWith(`${ENTITY_TYPE}:`))
  const entities = stale.filter((row) => row.startsWith(`${ENTITY_TYPE}:`))
  const repairs: UpdateOp[] = []
  if (keys.length > 0) repairs.push({ type: 'update', kind: 'mdelete', rows: keys, keys, repair: true })
  for (const row of entities) {
    repairs.push({
      type: 'update',
      kind: 'invalidateEntity',
      rows: [row],
      keys: [row.slice(ENTITY_TYPE.length + 1)],
      repair: true,
    })
  }
  return repairs
}

/**
 * One look at every layer: each instance's memory layers (under its current generation) and the shared
 * Redis, read by fresh stacks on a plain client under every generation an instance or Redis names.
 */
async function observeEverything(
  library: CacheLibrary,
  client: Redis | Cluster,
  prefix: string,
  commandTimeout: number,
  drivers: readonly Driver[],
  keyspace: ReturnType<typeof keyspaceOf>,
): Promise<Observation[]> {
  const at = historyNow()
  const observations: Observation[] = []
  const generations = new Set<number>()
  const peeks = await Promise.all(
    drivers.map(async (driver) => ({
      driver,
      peek: await driver.peekMemory(keyspace.keys, keyspace.entityIds).catch(() => undefined),
    })),
  )
  for (const { driver, peek } of peeks) {
    if (!peek) continue
    if (peek.generation !== undefined) generations.add(peek.generation)
    const stale = new Set(peek.stale ?? [])
    for (const [row, observed] of Object.entries(peek.rows)) {
      observations.push({ instance: driver.name, layer: 'memory', row, observed, at, stale: stale.has(row) })
    }
  }
  const layerPrefix = `${prefix}kv:`
  const stored = await client.get(library.generationKeyOf(layerPrefix)).catch(() => null)
  if (stored !== null) generations.add(Number(stored))
  const reader = new library.CacheStack([
    new library.RedisLayer({ client, prefix: layerPrefix, commandTimeout }),
  ])
  for (const generation of generations) {
    const scope = library.generationPrefix(generation)
    const values = await reader.mget(keyspace.keys.map((key) => scope + key)).catch(() => undefined)
    keyspace.keys.forEach((key, i) => {
      const value = values?.[i] as { k?: unknown; v?: unknown } | undefined
      const observed: Observed =
        value === undefined
          ? null
          : value.k === key && typeof value.v === 'number'
            ? value.v
            : `foreign ${JSON.stringify(value)}`
      observations.push({ instance: `redis g${generation}`, layer: 'redis', row: key, observed, at })
    })
  }
  const entities = new library.EntityCache({
    redis: client,
    keyPrefix: `${prefix}ent`,
    commandTimeout,
    entities: { [ENTITY_TYPE]: { id: 'id', ttl: 60_000 } },
  })
  try {
    for (const id of keyspace.entityIds) {
      const value = (await entities.getEntity(ENTITY_TYPE, id).catch(() => undefined)) as
        | { k?: unknown; v?: unknown }
        | undefined
      const row = entityRow(id)
      const observed: Observed =
        value === undefined
          ? null
          : value.k === row && typeof value.v === 'number'
            ? value.v
            : `foreign ${JSON.stringify(value)}`
      observations.push({ instance: 'redis', layer: 'redis', row, observed, at })
    }
  } finally {
    await entities.close()
  }
  return observations
}
