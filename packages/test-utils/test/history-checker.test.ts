// The model checker of the history checker on hand-written histories: each check fires on the history it
// describes, and stays quiet on the races the model allows.
import { describe, expect, it } from 'vitest'
import {
  type CallRecord,
  checkHistory,
  type History,
  LATE_WRITE_MS,
  type Observation,
  type Op,
  type OpOutcome,
  Prng,
} from '../src/history'

const B = 100

/** A history builder: times are ms from 0, every call is given its interval and outcome. */
function history() {
  const calls: CallRecord[] = []
  const loads: History['loads'][number][] = []
  const faults: History['faults'][number][] = []
  const dbWrites: History['dbWrites'][number][] = []
  const final: Observation[] = []
  const current: Record<string, number> = {}
  let id = 0
  const call = (instance: string, op: Op, start: number, end: number | undefined, outcome?: OpOutcome) => {
    calls.push({ id: ++id, instance, op, start, end, deadline: start + 1000, outcome })
  }
  const writeDatabase = (rows: string[], versions: number[], at: number) => {
    rows.forEach((row, i) => {
      dbWrites.push({ row, version: versions[i]!, at })
      current[row] = Math.max(current[row] ?? 0, versions[i]!)
    })
  }
  return {
    /** An update of `rows` to `versions` (the database write at `start`). */
    update(
      instance: string,
      kind: Extract<Op, { type: 'update' }>['kind'],
      rows: string[],
      versions: number[],
      start: number,
      end: number,
    ) {
      writeDatabase(rows, versions, start)
      call(instance, { type: 'update', kind, rows, keys: rows }, start, end, {
        ok: true,
        versions,
        writtenAt: start,
      })
      return this
    },
    /** An update that wrote the database (at `start`) and then failed. */
    failed(
      instance: string,
      kind: Extract<Op, { type: 'update' }>['kind'],
      rows: string[],
      versions: number[],
      start: number,
      end: number,
    ) {
      writeDatabase(rows, versions, start)
      call(instance, { type: 'update', kind, rows, keys: rows }, start, end, {
        ok: false,
        error: 'LayerTimeoutError',
        versions,
      })
      return this
    },
    read(instance: string, row: string, observed: number | null | string, start: number, end: number) {
      const op: Op = { type: 'read', kind: 'get', keys: [row], rows: [row], loader: { before: 0, after: 0 } }
      call(instance, op, start, end, { ok: true, observed: [observed] })
      return this
    },
    hung(instance: string, row: string, start: number) {
      call(
        instance,
        { type: 'read', kind: 'get', keys: [row], rows: [row], loader: { before: 0, after: 0 } },
        start,
        undefined,
      )
      return this
    },
    load(instance: string, row: string, version: number, start: number, end: number) {
      loads.push({ instance, row, version, start, readAt: start, end, via: 'getOrSet' })
      return this
    },
    pause(start: number, end: number) {
      faults.push({ kind: 'pause', detail: 'test', start, end })
      return this
    },
    restart(start: number, end: number) {
      faults.push({ kind: 'restart-empty', detail: 'test', start, end })
      return this
    },
    observe(instance: string, row: string, observed: number | null) {
      final.push({ instance, layer: 'memory', row, observed, at: 10_000 })
      return this
    },
    check() {
      const recorded: History = {
        seed: 'test',
        startedAt: 0,
        calls,
        loads,
        faults,
        instances: [],
        dbWrites,
        current,
        final,
      }
      return checkHistory(recorded, { busBoundMs: B, silentBoundMs: 1000 }).map((v) => v.check)
    },
  }
}

describe('history checker model', () => {
  it('accepts a history where every read is at least as new as what resolved before it', () => {
    const checks = history()
      .update('i0', 'delete', ['a:1'], [1], 0, 10)
      .read('i0', 'a:1', 1, 20, 21)
      .read('i1', 'a:1', null, 15, 16) // within B: anything goes, a miss too
      .read('i1', 'a:1', 1, 200, 201)
      .check()
    expect(checks).toEqual([])
  })

  it('(a): an older version on the instance that invalidated, after the invalidation resolved', () => {
    expect(
      history().update('i0', 'delete', ['a:1'], [2], 0, 10).read('i0', 'a:1', 1, 11, 12).check(),
    ).toEqual(['a'])
  })

  it('a read that overlaps the invalidation may still see the old version', () => {
    expect(history().update('i0', 'delete', ['a:1'], [2], 0, 10).read('i0', 'a:1', 1, 9, 12).check()).toEqual(
      [],
    )
  })

  it('(b): an older version on another instance once B has passed, not before', () => {
    const within = history()
      .update('i0', 'tag', ['a:1'], [2], 0, 10)
      .read('i1', 'a:1', 1, 10 + B - 1, 10 + B)
    expect(within.check()).toEqual([])
    const after = history()
      .update('i0', 'tag', ['a:1'], [2], 0, 10)
      .read('i1', 'a:1', 1, 11 + B, 12 + B)
    expect(after.check()).toEqual(['b'])
  })

  it('(b): around a paused Redis the bound is the heartbeat’s', () => {
    const checks = history()
      .pause(5, 50)
      .update('i0', 'tag', ['a:1'], [2], 0, 60)
      .read('i1', 'a:1', 1, 60 + B + 10, 60 + B + 11)
      .read('i1', 'a:1', 1, 60 + 1000 + 10, 60 + 1000 + 11)
      .check()
    expect(checks).toEqual(['b'])
  })

  it('weak updates: a load on another instance that began before a set resolved may win (last writer)', () => {
    const raced = history()
      .load('i1', 'a:1', 1, 5, 8)
      .update('i0', 'set', ['a:1'], [2], 6, 10)
      .read('i0', 'a:1', 1, 20, 21)
    expect(raced.check()).toEqual([])
    // ...unless an invalidation that began after the load resolved before the read.
    const fenced = history()
      .load('i1', 'a:1', 1, 5, 8)
      .update('i0', 'set', ['a:1'], [2], 6, 10)
      .update('i0', 'delete', ['a:1'], [3], 12, 14)
      .read('i0', 'a:1', 1, 20, 21)
    expect(fenced.check()).toEqual(['a'])
    // A load that began after the set resolved read the new version anyway: no excuse.
    expect(
      history()
        .update('i0', 'set', ['a:1'], [2], 6, 10)
        .load('i1', 'a:1', 2, 11, 12)
        .read('i0', 'a:1', 1, 20, 21)
        .check(),
    ).toEqual(['a'])
  })

  it('a failed overwrite around a stall may be applied until LATE_WRITE_MS after, also after later updates', () => {
    // setEntity failed while Redis was paused (its database write stands); Redis ran it once resumed,
    // after another instance's invalidation it had received later (model: "Failed overwrites may still land").
    const during = history()
      .pause(0, 500)
      .failed('i2', 'setEntity', ['row:4'], [9], 10, 410)
      .update('i0', 'invalidateEntity', ['row:4'], [10], 420, 520)
      .read('i0', 'row:4', 9, 530, 531)
      .read('i0', 'row:4', 9, 5000, 5001)
    expect(during.check()).toEqual([])
    // Shortly after a restart (a Cluster recovering: ioredis retries on CLUSTERDOWN), the same.
    const recovering = history()
      .restart(0, 100)
      .failed('p0', 'setEntity', ['row:1'], [5], 1000, 1500)
      .update('p0', 'invalidateEntity', ['row:1'], [6], 1500, 1510)
      .read('p0', 'row:1', 5, 1520, 1521)
    expect(recovering.check()).toEqual([])
    // A plain set carries its deadline: Redis refuses it once it failed, stall or not.
    const plain = history()
      .pause(0, 500)
      .failed('p0', 'set', ['a:1'], [5], 10, 410)
      .update('p0', 'delete', ['a:1'], [6], 420, 520)
      .read('p0', 'a:1', 5, 530, 531)
    expect(plain.check()).toEqual(['a'])
    // An update that began once that was over came after it: its floor stands.
    const late = 500 + LATE_WRITE_MS
    const after = history()
      .pause(0, 500)
      .failed('i2', 'setEntity', ['row:4'], [9], 10, 410)
      .update('i0', 'invalidateEntity', ['row:4'], [10], 420, 520)
      .update('i0', 'delete', ['row:4'], [11], late + 1, late + 10)
      .read('i0', 'row:4', 9, late + 20, late + 21)
    expect(after.check()).toEqual(['a'])
    // Without a stall a failed write is no excuse: Redis ran it before what was sent after it failed.
    const calm = history()
      .failed('i2', 'setEntity', ['row:4'], [9], 10, 410)
      .update('i0', 'invalidateEntity', ['row:4'], [10], 420, 520)
      .read('i0', 'row:4', 9, 530, 531)
    expect(calm.check()).toEqual(['a'])
  })

  it('(c): after quiescence nothing or the current version', () => {
    const checks = history()
      .update('i0', 'delete', ['a:1'], [1], 0, 10)
      .update('i0', 'delete', ['a:1'], [2], 20, 30)
      .observe('i0', 'a:1', 2)
      .observe('i1', 'a:1', null)
      .observe('i2', 'a:1', 1)
      .check()
    expect(checks).toEqual(['c'])
  })

  it('(d): a call that never settled, or settled after its deadline', () => {
    expect(history().hung('i0', 'a:1', 0).check()).toEqual(['d'])
    expect(history().read('i0', 'a:1', null, 0, 1500).check()).toEqual(['d'])
  })

  it('a value newer than the database, or of another row', () => {
    expect(
      history().update('i0', 'delete', ['a:1'], [1], 0, 10).read('i0', 'a:1', 2, 20, 21).check(),
    ).toEqual(['phantom'])
    expect(history().read('i0', 'a:1', 'value of a:2 (v1)', 20, 21).check()).toEqual(['foreign'])
  })
})

describe('Prng', () => {
  it('gives the same stream for the same seed, and forks independent of draws', () => {
    const a = new Prng(42)
    const b = new Prng('42')
    expect(Array.from({ length: 5 }, () => a.next())).toEqual(Array.from({ length: 5 }, () => b.next()))
    const fresh = new Prng(42).fork('x')
    expect(a.fork('x').next()).toBe(fresh.next())
    const ints = Array.from({ length: 1000 }, () => a.int(1, 3))
    expect(new Set(ints)).toEqual(new Set([1, 2, 3]))
  })
})
