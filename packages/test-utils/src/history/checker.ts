// The model checker of the history checker. It reads a recorded history (recorder.ts) and reports every
// place where it breaks the written model below: the model docs/consistency.md states for invariants 1
// and 2 of the design brief.
//
// THE MODEL
//
// Time. Every record is on one clock (historyNow(): epoch ms, sub-ms, the same in every process on the
// host). A call's interval [start, end] is taken by the driver around the call (for a worker process: when
// the request left and the answer came back), so it contains the real call; a read that raced an update
// inside the same call (UpdateOp.race) gets the update's interval. A loader's start, database read and
// return are taken where it runs (another process's clock may be off by clockSlackMs).
//
// Database of record. Every row has a version that only grows (database.ts). A cached value is
// `{ k: row, v: version }`: the row and the version it was built from.
//
// Updates. An update writes the database first (it bumps every row it covers) and then calls the cache.
// For a row r it covers, version(U, r) is the version U wrote (the version current when U's own database
// write completed). Only updates that resolved count; a failed update sets no floor (the runner repairs its
// rows with a delete at the end, which is an update like any other, writing nothing: its version is the
// current one). Updates of one row never overlap when one of them is weak (the driver locks the row:
// weak ones exclusively, strong ones shared), so weak writes never race each other or an invalidation of
// the same row; strong ones do race each other.
//   - Strong updates invalidate: delete, mdelete, invalidateByTag, invalidateByTags any/all,
//     invalidateByPrefix, invalidateByPattern, bumpGeneration, writeThrough (with or without reload),
//     EntityCache.invalidateEntity.
//   - Weak updates overwrite: set, mset, EntityCache.setEntity, updateEntityIfExists. On their own
//     instance they fence every read and load in flight, like an invalidation; the other instances drop
//     their copy through the bus (the stacks run with broadcastL1Invalidation). Across instances a
//     weak update is last-writer-wins against a load (docs/invalidation.md "Keys"): a loader on another
//     instance that began before the weak update resolved (loader start < U.end + slack) may write its
//     older version back afterwards, unless a strong update of the row began after that loader began and
//     counts for the read (below). Such a weak update sets the floor to the smallest version those
//     loaders read instead of its own.
//   - Failed entity overwrites may still land (docs/consistency.md, Limits). A plain set or mset carries
//     its deadline and Redis refuses it past it, so a failed one never lands after its caller was told it
//     failed. EntityCache's writes carry none yet: an entity overwrite W (LATE_LANDING) that failed after
//     its database write, around a stall (a pause or a restart in progress while W ran, or ended less
//     than lateWriteMs before W began), may still be applied by Redis after W failed, until lateWriteMs
//     after W ended or the stall did, whichever is later. Redis had received it and runs it when it runs
//     again, not necessarily before what other connections sent later (it reads each connection a slice
//     at a time, and one with a backlog waits for the next slice); ioredis sends it again after a
//     reconnect; on a Cluster that is recovering, ioredis retries it on CLUSTERDOWN or TRYAGAIN every
//     100 ms, up to 16 times (lateWriteMs, 2 s by default, covers that). So for every update U of the
//     row that began before that deadline and resolved after W began, W's version may be what the row
//     holds after U: U's floor is the smaller of the two. An update that began after the deadline is
//     unaffected. The runner repairs such rows at the end as it repairs failed ones, so (c) still asks
//     for the current version. (What the library must not do, and its own tests check, is send anything
//     for a call after it failed: a script answered NOSCRIPT after the timeout is not sent again.)
//
// Floor. For a read R of row r on instance I, floor(R, r) is the largest version(U, r) over resolved
// updates U covering r that count for R:
//   - U on I counts once U.end < R.start;
//   - U on another instance counts once U.end + B(U) < R.start, where B(U) is the bus bound. A message
//     reaches every live subscriber within milliseconds, and a subscriber that lost its connection (pub/sub
//     connections killed, Redis restarted) notices at once and flushes: B(U) = busBoundMs (delivery,
//     reconnection and scheduling slack). Only a silent stall is left to the heartbeat: when Redis was
//     paused (SIGSTOP) at some time in [U.start, U.end + silentBoundMs], B(U) = silentBoundMs
//     (heartbeatTimeoutMs + heartbeatMs + slack).
//   - A soft invalidation (expire, expireByTag, expireByPrefix) counts only for reads that answer fresh
//     values alone (get, mget): a getOrSet may answer the entry it left stale (its own stale window, or a
//     background refresh another caller's window started answers joiners with it), so only hard updates
//     bind getOrSet. Soft updates never end a weak update's last-writer-wins window. In (c) a memory entry
//     marked stale is bound by hard updates only; Redis is read by a fresh-only reader there.
//
// Checks.
//   (a) A read that starts after an invalidation of its row resolved on the same instance never returns
//       an older version: a read's answer is a miss or a version >= floor, counting updates of I only.
//   (b) The same for updates of other instances, once the bus bound B has passed.
//   (c) After quiescence (every call settled, faults healed, failed updates repaired, background work
//       done: no loader running, no Redis command in flight, the buses healthy) every layer of every
//       instance (each memory layer under the instance's current generation, the shared Redis through a
//       fresh reader) holds nothing or a version v with floor(∞, r) <= v <= current(r); floor(∞, r) is the
//       current version unless the row's last update failed or was weak.
//   (d) No call stays pending past its deadline (its timeouts: commandTimeout-based, see the runner).
//   Also: a value is never newer than the database (phantom), and never another row's or not a row at
//   all (foreign).

import type { LoadReport, Observed } from './instance'
import type { CallRecord, FaultRecord, History, Observation } from './recorder'
import { describeOp, FRESH_ONLY_READS, SOFT_UPDATES, WEAK_UPDATES } from './workload'

export type CheckName = 'a' | 'b' | 'c' | 'd' | 'phantom' | 'foreign'

export interface Violation {
  readonly check: CheckName
  readonly seed: string
  /** The instance that answered (or hung). */
  readonly instance: string
  readonly row?: string
  /** The call, as `kind(args)`. */
  readonly op: string
  readonly message: string
  /**
   * Known shapes the history around the violation has (a hint, not a proof): `racing read on X` (a read
   * of the row on the reading or the invalidating instance overlapped the invalidation and got the old
   * version), `in-flight load on X` (the old version was read by a loader that began before the
   * invalidation and returned after it began: its write-back should have been fenced), `overlapping group
   * invalidations`, `writeThrough`, `missed bus message` (another instance's invalidation, none of these).
   */
  readonly patterns: readonly string[]
  /** The relevant history, one event a line, times in ms since the run began. */
  readonly trace: readonly string[]
}

export interface CheckOptions {
  /** B in the model, ms: delivery and reconnection. */
  readonly busBoundMs: number
  /** B in the model around a silent stall (Redis paused), ms: the heartbeat's detection bound. */
  readonly silentBoundMs?: number
  /** How far loader times taken in worker processes may be off the driver's clock, ms. Default 2. */
  readonly clockSlackMs?: number
  /** How long after it failed (or after the stall around it) a write may still be applied, ms. Default 2000. */
  readonly lateWriteMs?: number
}

/** See the model, "Failed overwrites may still land": ioredis's Cluster retries (16 × 100 ms) and slack. */
export const LATE_WRITE_MS = 2000

/** A failed overwrite Redis may still apply (see the model: "Failed overwrites may still land"). */
export interface LateWrite {
  readonly call: CallRecord
  readonly row: string
  readonly version: number
  /** Until when it may be applied: lateWriteMs after it failed or the stall around it ended. */
  readonly until: number
}

/** Overwrites Redis may still apply after their call failed: those without a deadline (entity writes). */
const LATE_LANDING: ReadonlySet<string> = new Set(['setEntity', 'updateEntityIfExists'])

/** The failed overwrites of a history that Redis may still apply after they failed, and until when. */
export function lateWritesOf(
  calls: readonly CallRecord[],
  faults: readonly FaultRecord[],
  lateWriteMs: number,
): LateWrite[] {
  const late: LateWrite[] = []
  for (const call of calls) {
    const outcome = call.outcome
    if (call.op.type !== 'update' || outcome?.ok !== false || call.end === undefined) continue
    if (!LATE_LANDING.has(call.op.kind) || call.op.repair === true) continue
    let stallEnd: number | undefined
    for (const fault of faults) {
      if (fault.kind !== 'pause' && fault.kind !== 'restart-empty') continue
      const end = fault.end ?? Number.POSITIVE_INFINITY
      if (fault.start <= call.end && end + lateWriteMs >= call.start)
        stallEnd = Math.max(stallEnd ?? end, end)
    }
    if (stallEnd === undefined) continue
    const until = Math.max(stallEnd, call.end) + lateWriteMs
    call.op.rows.forEach((row, i) => {
      const version = outcome.versions?.[i]
      if (version !== undefined) late.push({ call, row, version, until })
    })
  }
  return late
}

interface UpdateFact {
  readonly call: CallRecord
  readonly row: string
  readonly version: number
  readonly weak: boolean
  /** A soft invalidation (expire*): binds fresh-only reads alone. */
  readonly soft: boolean
}

interface Floor {
  readonly version: number
  readonly by?: UpdateFact
  /** The loaders that lowered a weak update's floor. */
  readonly lwwLoads?: readonly LoadReport[]
  /** The failed overwrites that lowered it. */
  readonly lateWrites?: readonly LateWrite[]
}

export const CHECK_TITLES: Readonly<Record<CheckName, string>> = {
  a: '(a) stale read after an invalidation resolved on the same instance',
  b: '(b) stale read on another instance after the bus bound',
  c: '(c) stale value after quiescence',
  d: '(d) call pending past its deadline',
  phantom: 'value newer than the database',
  foreign: 'foreign value',
}

export class HistoryChecker {
  readonly #updates = new Map<string, UpdateFact[]>()
  readonly #loads = new Map<string, LoadReport[]>()
  readonly #writes = new Map<string, { version: number; at: number }[]>()
  readonly #lateWrites = new Map<string, LateWrite[]>()
  readonly #slack: number
  readonly #processes: ReadonlySet<string>

  constructor(
    private readonly history: History,
    private readonly options: CheckOptions,
  ) {
    this.#slack = options.clockSlackMs ?? 2
    this.#processes = new Set(
      history.instances.filter((record) => record.process).map((record) => record.name),
    )
    for (const call of history.calls) {
      const outcome = call.outcome
      if (call.op.type !== 'update' || outcome?.ok !== true || call.end === undefined) continue
      const weak = WEAK_UPDATES.has(call.op.kind) && call.op.repair !== true
      const soft = SOFT_UPDATES.has(call.op.kind) && call.op.repair !== true
      call.op.rows.forEach((row, i) => {
        const version = outcome.versions?.[i]
        if (version === undefined) return
        this.#list(this.#updates, row).push({ call, row, version, weak, soft })
      })
    }
    for (const load of history.loads) this.#list(this.#loads, load.row).push(load)
    for (const write of history.dbWrites) this.#list(this.#writes, write.row).push(write)
    const lateWriteMs = options.lateWriteMs ?? LATE_WRITE_MS
    for (const late of lateWritesOf(history.calls, history.faults, lateWriteMs)) {
      this.#list(this.#lateWrites, late.row).push(late)
    }
  }

  check(): Violation[] {
    const violations: Violation[] = []
    for (const call of this.history.calls) {
      violations.push(...this.#checkDeadline(call))
      if (call.op.type !== 'read' || call.outcome?.ok !== true || call.end === undefined) continue
      const observed = call.outcome.observed ?? []
      call.op.rows.forEach((row, i) => {
        const violation = this.#checkRead(call, row, observed[i] ?? null)
        if (violation) violations.push(violation)
      })
    }
    for (const observation of this.history.final) {
      const violation = this.#checkFinal(observation)
      if (violation) violations.push(violation)
    }
    return violations
  }

  /** (c) over a round of looks at the layers (the runner polls this until it holds). */
  checkObservations(observations: readonly Observation[]): Violation[] {
    return observations.flatMap((observation) => this.#checkFinal(observation) ?? [])
  }

  /** Floor of `row` for a read on `instance` starting at `start` (Infinity: after quiescence). */
  floor(row: string, instance: string, start: number, freshOnly = true): Floor {
    const counts = (call: CallRecord) =>
      start === Number.POSITIVE_INFINITY ||
      (call.instance === instance ? call.end! : call.end! + this.boundFor(call)) < start
    let best: Floor = { version: 0 }
    for (const fact of this.#updates.get(row) ?? []) {
      if (!counts(fact.call) || (fact.soft && !freshOnly)) continue
      let version = fact.version
      let lwwLoads: LoadReport[] | undefined
      if (fact.weak) {
        lwwLoads = (this.#loads.get(row) ?? []).filter(
          (load) =>
            load.instance !== fact.call.instance &&
            load.start < fact.call.end! + this.#slackFor(load.instance) &&
            load.version < fact.version &&
            !this.#strongAfter(row, load.start + this.#slackFor(load.instance), counts),
        )
        for (const load of lwwLoads) version = Math.min(version, load.version)
      }
      // A failed overwrite that began before this update resolved and may land after it began.
      const lateWrites = (this.#lateWrites.get(row) ?? []).filter(
        (late) =>
          late.version < fact.version && late.call.start < fact.call.end! && fact.call.start < late.until,
      )
      for (const late of lateWrites) version = Math.min(version, late.version)
      if (version > best.version) {
        best = {
          version,
          by: fact,
          ...(lwwLoads?.length ? { lwwLoads } : {}),
          ...(lateWrites.length > 0 ? { lateWrites } : {}),
        }
      }
    }
    return best
  }

  /** B(U) of the model for an update U. */
  boundFor(call: CallRecord): number {
    const silent = this.options.silentBoundMs ?? this.options.busBoundMs
    const stalled = this.history.faults.some(
      (fault) =>
        fault.kind === 'pause' &&
        fault.start <= call.end! + silent &&
        (fault.end ?? Number.POSITIVE_INFINITY) >= call.start,
    )
    return stalled ? Math.max(silent, this.options.busBoundMs) : this.options.busBoundMs
  }

  /** Whether a strong update of `row` that began after `since` counts for the read. */
  #strongAfter(row: string, since: number, counts: (call: CallRecord) => boolean): boolean {
    return (this.#updates.get(row) ?? []).some(
      (fact) => !fact.weak && !fact.soft && fact.call.start > since && counts(fact.call),
    )
  }

  /** The database version of `row` at `at`. */
  #versionAt(row: string, at: number): number {
    let version = 0
    for (const write of this.#writes.get(row) ?? [])
      if (write.at <= at) version = Math.max(version, write.version)
    return version
  }

  #checkRead(call: CallRecord, row: string, observed: Observed): Violation | undefined {
    if (observed === null) return undefined
    const op = describeOp(call.op)
    if (typeof observed === 'string') {
      return this.#violation('foreign', call.instance, row, op, `${op} answered ${observed} for ${row}`, [
        ...this.#around(row, call.start - 200, call.end!, call),
      ])
    }
    const newest = this.#versionAt(row, call.end!)
    if (observed > newest) {
      return this.#violation(
        'phantom',
        call.instance,
        row,
        op,
        `${op} answered ${row} v${observed}, but the database held v${newest} when it returned`,
        this.#around(row, call.start - 200, call.end!, call),
      )
    }
    const freshOnly = call.op.type === 'read' && FRESH_ONLY_READS.has(call.op.kind)
    const floor = this.floor(row, call.instance, call.start, freshOnly)
    if (observed >= floor.version || floor.by === undefined) return undefined
    const by = floor.by.call
    const same = by.instance === call.instance
    const after = same
      ? 'after it resolved'
      : `${this.#ms(call.start - by.end!)} after it resolved (B = ${this.boundFor(by)} ms)`
    return this.#violation(
      same ? 'a' : 'b',
      call.instance,
      row,
      op,
      `${call.instance} ${op} started ${after} ${by.instance} ${describeOp(by.op)} (${row} v${floor.version}) and answered v${observed}`,
      this.#around(row, Math.min(by.start, this.#producedAt(row, observed)) - 50, call.end!, call, floor),
      this.#patterns(row, observed, call.instance, floor),
    )
  }

  #checkFinal(observation: Observation): Violation | undefined {
    const { row, observed, instance, layer } = observation
    if (observed === null) return undefined
    const where = layer === 'redis' ? 'Redis' : `${instance} ${layer === 'memory' ? 'memory layer' : 'read'}`
    const op = `quiescence: ${where}`
    if (typeof observed === 'string') {
      return this.#violation('foreign', instance, row, op, `${where} holds ${observed} for ${row}`, [])
    }
    const current = this.history.current[row] ?? 0
    const floor = this.floor(row, instance, Number.POSITIVE_INFINITY, observation.stale !== true)
    if (observed >= floor.version && observed <= current) return undefined
    const last = this.#lastUpdate(row)
    const patterns = floor.by ? this.#patterns(row, observed, instance, floor) : []
    return this.#violation(
      'c',
      instance,
      row,
      op,
      `after quiescence ${where} holds ${row} v${observed}; the database holds v${current}` +
        (floor.version < current ? ` (v${floor.version} or later allowed)` : ''),
      this.#around(
        row,
        Math.min(last?.start ?? observation.at, this.#producedAt(row, observed)) - 50,
        observation.at,
        undefined,
        floor,
      ),
      patterns,
    )
  }

  #checkDeadline(call: CallRecord): Violation[] {
    const end = call.end ?? Number.POSITIVE_INFINITY
    if (end <= call.deadline) return []
    const op = describeOp(call.op)
    const allowed = this.#ms(call.deadline - call.start)
    const message =
      call.end === undefined
        ? `${call.instance} ${op} never settled (deadline ${allowed})`
        : `${call.instance} ${op} took ${this.#ms(end - call.start)} (deadline ${allowed})`
    const row = call.op.rows[0]
    return [
      this.#violation(
        'd',
        call.instance,
        row,
        op,
        message,
        row ? this.#around(row, call.start - 50, Math.min(end, call.deadline + 1000), call) : [],
      ),
    ]
  }

  /** See Violation.patterns. */
  #patterns(row: string, stale: number, reader: string, floor: Floor): string[] {
    const by = floor.by!.call
    const patterns: string[] = []
    const overlaps = (call: CallRecord) =>
      call.start < by.end! && (call.end ?? Number.POSITIVE_INFINITY) > by.start
    const racing = this.history.calls.find(
      (call) =>
        call.op.type === 'read' &&
        (call.instance === reader || call.instance === by.instance) &&
        overlaps(call) &&
        call.outcome?.ok === true &&
        call.op.rows.some(
          (r, i) => r === row && call.outcome?.ok === true && call.outcome.observed?.[i] === stale,
        ),
    )
    if (racing) patterns.push(`racing read on ${racing.instance}`)
    const inFlight = (this.#loads.get(row) ?? []).find(
      (load) => load.version === stale && this.#inFlightAt(load, by.start),
    )
    if (inFlight) patterns.push(`in-flight load on ${inFlight.instance}`)
    const group = (call: CallRecord) =>
      call.op.type === 'update' &&
      ['tag', 'tagsAny', 'tagsAll', 'prefix', 'pattern', 'generation'].includes(call.op.kind)
    if (group(by)) {
      const other = this.history.calls.find(
        (call) => call !== by && group(call) && call.op.rows.includes(row) && overlaps(call),
      )
      if (other)
        patterns.push(
          `overlapping group invalidations (${describeOp(other.op).split(' →')[0]} on ${other.instance})`,
        )
    }
    if (by.op.kind === 'writeThrough' || by.op.kind === 'writeThroughReload') patterns.push('writeThrough')
    if (patterns.length === 0 && reader !== by.instance) patterns.push('missed bus message')
    return patterns
  }

  /**
   * Whether `load` was under way at `time`: begun, and its loader or the call of its instance that may write
   * its value back (one of the row that began before the loader and ended after `time`) not finished.
   */
  #inFlightAt(load: LoadReport, time: number): boolean {
    const slack = this.#slackFor(load.instance)
    if (load.start >= time + slack) return false
    if (load.end > time - slack) return true
    return this.history.calls.some(
      (call) =>
        call.instance === load.instance &&
        call.op.rows.includes(load.row) &&
        call.start <= load.start + slack &&
        (call.end ?? Number.POSITIVE_INFINITY) > time,
    )
  }

  /** How far the times an instance's loaders report may be off the driver's: 0 in this process. */
  #slackFor(instance: string): number {
    return this.#processes.has(instance) ? this.#slack : 0
  }

  #lastUpdate(row: string): CallRecord | undefined {
    let last: CallRecord | undefined
    for (const call of this.history.calls) {
      if (call.op.type === 'update' && call.op.rows.includes(row) && (!last || call.start > last.start))
        last = call
    }
    return last
  }

  /** When the version `observed` of `row` first existed (its database write). */
  #producedAt(row: string, observed: number): number {
    return this.#writes.get(row)?.find((write) => write.version === observed)?.at ?? Number.POSITIVE_INFINITY
  }

  #violation(
    check: CheckName,
    instance: string,
    row: string | undefined,
    op: string,
    message: string,
    trace: string[],
    patterns: string[] = [],
  ): Violation {
    return {
      check,
      seed: this.history.seed,
      instance,
      ...(row === undefined ? {} : { row }),
      op,
      message,
      patterns,
      trace,
    }
  }

  #ms(duration: number): string {
    return `${duration.toFixed(1)} ms`
  }

  #at(time: number): string {
    return `+${(time - this.history.startedAt).toFixed(1)}`.padStart(9)
  }

  /** The history of `row` between `from` and `to`: calls, database writes, loads, faults. */
  #around(row: string, from: number, to: number, focus?: CallRecord, floor?: Floor): string[] {
    const lines: { at: number; text: string }[] = []
    const lower = Number.isFinite(from) ? from : to - 500
    const lateCalls = new Set((floor?.lateWrites ?? []).map((late) => late.call))
    for (const call of this.history.calls) {
      const end = call.end ?? Number.POSITIVE_INFINITY
      if (!call.op.rows.includes(row) || end < lower || call.start > to) continue
      const mark =
        call === focus
          ? '>>'
          : call === floor?.by?.call
            ? '**'
            : lateCalls.has(call)
              ? 'lo'
              : call.raced !== undefined
                ? ' ~'
                : '  '
      const outcome = call.outcome
      const index = call.op.rows.indexOf(row)
      let result = 'pending'
      if (outcome?.ok === false) result = `failed: ${outcome.error.slice(0, 120)}`
      else if (outcome?.ok === true && call.op.type === 'read')
        result = `→ ${this.#show(outcome.observed?.[index] ?? null)}`
      else if (outcome?.ok === true) result = `→ wrote v${outcome.versions?.[index]}`
      const interval = `[${this.#at(call.start)} .. ${call.end === undefined ? 'pending' : this.#at(call.end)}]`
      lines.push({
        at: call.start,
        text: `${mark} ${interval} ${call.instance.padEnd(4)} ${describeOp(call.op)} ${result}`,
      })
    }
    for (const write of this.#writes.get(row) ?? []) {
      if (write.at >= lower && write.at <= to)
        lines.push({ at: write.at, text: `   ${this.#at(write.at)} db   ${row} := v${write.version}` })
    }
    const lww = new Set(floor?.lwwLoads ?? [])
    for (const load of this.#loads.get(row) ?? []) {
      if (load.readAt < lower || load.start > to) continue
      const mark = lww.has(load) ? 'lw' : '  '
      lines.push({
        at: load.start,
        text: `${mark} ${this.#at(load.start)} ${load.instance.padEnd(4)} loader (${load.via}) read ${row} v${load.version} at ${this.#at(load.readAt).trim()}, returned ${this.#at(load.end).trim()}`,
      })
    }
    for (const fault of this.history.faults) {
      const end = fault.end ?? Number.POSITIVE_INFINITY
      if (end < lower || fault.start > to) continue
      lines.push({
        at: fault.start,
        text: `!! [${this.#at(fault.start)} .. ${fault.end === undefined ? 'open' : this.#at(fault.end)}] fault ${fault.kind} ${fault.detail}`,
      })
    }
    lines.sort((x, y) => x.at - y.at)
    const texts = lines.map((line) => line.text)
    return texts.length > 40
      ? [...texts.slice(0, 10), `   … ${texts.length - 30} more …`, ...texts.slice(-20)]
      : texts
  }

  #show(observed: Observed): string {
    return observed === null ? 'miss' : typeof observed === 'number' ? `v${observed}` : observed
  }

  #list<T>(map: Map<string, T[]>, key: string): T[] {
    let list = map.get(key)
    if (!list) {
      list = []
      map.set(key, list)
    }
    return list
  }
}

/** Checks a history against the model; see the comment at the top of this file. */
export function checkHistory(history: History, options: CheckOptions): Violation[] {
  return new HistoryChecker(history, options).check()
}

/** A readable report: one block per violation, with the seed to reproduce it. */
export function formatViolations(violations: readonly Violation[], limit = 10): string {
  if (violations.length === 0) return 'no violations'
  const blocks = violations
    .slice(0, limit)
    .map((violation) =>
      [
        `${CHECK_TITLES[violation.check]} — SEED=${violation.seed}`,
        `  ${violation.message}`,
        ...(violation.patterns.length > 0 ? [`  patterns: ${violation.patterns.join('; ')}`] : []),
        ...violation.trace.map((line) => `    ${line}`),
      ].join('\n'),
    )
  const rest = violations.length > limit ? [`… and ${violations.length - limit} more`] : []
  return [...blocks, ...rest].join('\n\n')
}

/** Counts by check, e.g. `{ a: 2, c: 1 }`. */
export function countByCheck(violations: readonly Violation[]): Partial<Record<CheckName, number>> {
  const counts: Partial<Record<CheckName, number>> = {}
  for (const violation of violations) counts[violation.check] = (counts[violation.check] ?? 0) + 1
  return counts
}
