// The recorder of the history checker: every call's start, end and answer, every loader's read of the
// database, every fault and every instance's life, on one time base (historyNow()). Times are taken on the
// side that drives the instances, so a call's recorded interval contains the real one, also for worker
// processes (their loaders report their own times, on the same absolute clock).

import { historyNow } from './clock'
import type { DatabaseWrite } from './database'
import type { LoadReport, Observed, OpOutcome } from './instance'
import type { Op } from './workload'

export interface CallRecord {
  readonly id: number
  readonly instance: string
  readonly op: Op
  readonly start: number
  /** When the call must have settled ((d): no call stays pending past its timeouts). */
  readonly deadline: number
  end?: number
  outcome?: OpOutcome
  /** A read that raced this update on its instance (see UpdateOp.race): the id of the update. */
  readonly raced?: number
}

export type FaultKind = 'pause' | 'pubsub-kill' | 'restart-empty' | 'instance-kill' | 'clock-offset'

export interface FaultRecord {
  readonly kind: FaultKind
  detail: string
  readonly start: number
  end?: number
}

export interface InstanceRecord {
  readonly name: string
  readonly process: boolean
  readonly started: number
  stopped?: number
  killed?: boolean
}

/** One look at a layer after quiescence ((c)). `instance` is `redis` for the shared layer. */
export interface Observation {
  readonly instance: string
  readonly layer: 'memory' | 'redis' | 'read'
  readonly row: string
  readonly observed: Observed
  readonly at: number
  /** A memory entry a soft invalidation marked stale: only hard updates bind it. */
  readonly stale?: boolean
}

/** Everything the checker needs, plain data. */
export interface History {
  readonly seed: string
  readonly startedAt: number
  readonly calls: readonly CallRecord[]
  readonly loads: readonly LoadReport[]
  readonly faults: readonly FaultRecord[]
  readonly instances: readonly InstanceRecord[]
  readonly dbWrites: readonly DatabaseWrite[]
  /** The database after the run. */
  readonly current: Readonly<Record<string, number>>
  /** The last round of looks at every layer after quiescence. */
  readonly final: readonly Observation[]
}

export class Recorder {
  readonly startedAt = historyNow()
  readonly calls: CallRecord[] = []
  readonly loads: LoadReport[] = []
  readonly faults: FaultRecord[] = []
  readonly instances: InstanceRecord[] = []
  #nextId = 1
  #pending = 0
  readonly #settled: (() => void)[] = []

  constructor(readonly seed: string) {}

  /** Calls started and not settled. */
  get pending(): number {
    return this.#pending
  }

  begin(instance: string, op: Op, deadlineMs: number): CallRecord {
    const start = historyNow()
    const call: CallRecord = { id: this.#nextId++, instance, op, start, deadline: start + deadlineMs }
    this.calls.push(call)
    this.#pending++
    return call
  }

  end(call: CallRecord, outcome: OpOutcome): void {
    if (call.end !== undefined) return
    call.end = historyNow()
    call.outcome = outcome
    if (--this.#pending === 0) for (const wake of this.#settled.splice(0)) wake()
  }

  /** A call that ran inside another one (a racing read): recorded with the enclosing call's interval. */
  within(outer: CallRecord, op: Op, outcome: OpOutcome): void {
    this.calls.push({ ...outer, id: this.#nextId++, op, outcome, raced: outer.id })
  }

  /** Resolves once no call is pending. */
  async settled(): Promise<void> {
    if (this.#pending > 0) await new Promise<void>((resolve) => this.#settled.push(resolve))
  }

  load(report: LoadReport): void {
    this.loads.push(report)
  }

  fault(kind: FaultKind, detail: string): FaultRecord {
    const fault: FaultRecord = { kind, detail, start: historyNow() }
    this.faults.push(fault)
    return fault
  }

  instanceStarted(name: string, process: boolean): InstanceRecord {
    const record: InstanceRecord = { name, process, started: historyNow() }
    this.instances.push(record)
    return record
  }

  history(
    dbWrites: readonly DatabaseWrite[],
    current: Readonly<Record<string, number>>,
    final: readonly Observation[],
  ): History {
    return {
      seed: this.seed,
      startedAt: this.startedAt,
      calls: this.calls,
      loads: this.loads,
      faults: this.faults,
      instances: this.instances,
      dbWrites,
      current,
      final,
    }
  }
}
