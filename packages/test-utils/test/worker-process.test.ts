import { afterEach, describe, expect, it } from 'vitest'
import { forkWorker, WorkerError, WorkerExitedError, type WorkerHandle } from '../src/index'
import type { CalcApi, CalcInit } from './support/calc-worker'

const CALC_WORKER = new URL('./support/calc-worker.ts', import.meta.url)

const workers: WorkerHandle<CalcApi>[] = []
afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.kill()))
})

async function startCalc(init: CalcInit = { offset: 0 }): Promise<WorkerHandle<CalcApi>> {
  const worker = await forkWorker<CalcApi>(CALC_WORKER, init)
  workers.push(worker)
  return worker
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('forkWorker / serveWorker', () => {
  it('runs the API in another process, built from init', async () => {
    const worker = await startCalc({ offset: 100 })
    expect(worker.pid).not.toBe(process.pid)
    expect(await worker.call('pid')).toBe(worker.pid)
    expect(await worker.call('add', 1, 2)).toBe(103)
    expect(await worker.call('addLater', 3, 4)).toBe(107)
    expect(await Promise.all([worker.call('add', 1, 1), worker.call('addLater', 2, 2)])).toEqual([102, 104])
  })

  it('passes values by structured clone', async () => {
    const worker = await startCalc()
    const value = { when: new Date(0), tags: new Set(['a']), byKey: new Map([['k', 1]]), none: undefined }
    expect(await worker.call('echo', value)).toEqual(value)
  })

  it('rejects with the error the method threw: name, message and code', async () => {
    const worker = await startCalc()
    const error = await worker.call('fail', 'boom').catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(WorkerError)
    expect(error).toMatchObject({ name: 'CodedError', message: 'boom', code: 'E_CALC' })
    expect((error as WorkerError).workerStack).toContain('calc-worker.ts')
    // The worker keeps serving after a failed call.
    expect(await worker.call('add', 1, 1)).toBe(2)
  })

  it('rejects a call to a method the API does not have', async () => {
    const worker = await startCalc()
    const untyped = worker as unknown as WorkerHandle<{ missing(): void }>
    await expect(untyped.call('missing')).rejects.toMatchObject({
      name: 'TypeError',
      message: 'the worker API has no method "missing"',
    })
  })

  it('delivers the events the worker emits', async () => {
    const worker = await startCalc()
    const seen: unknown[] = []
    const off = worker.on('tick', (data) => seen.push(data))
    const second = worker.nextEvent('tock')
    await worker.call('emitSoon', 'tick', { n: 1 })
    await worker.call('emitSoon', 'tock', 'two')
    expect(await second).toBe('two')
    expect(seen).toEqual([{ n: 1 }])
    off()
    const third = worker.nextEvent('tock')
    await worker.call('emitSoon', 'tick', { n: 2 })
    await worker.call('emitSoon', 'tock', 'three')
    await third
    expect(seen).toEqual([{ n: 1 }])
  })

  it('kill() waits for the exit and rejects the calls still pending', async () => {
    const worker = await startCalc()
    const pending = worker.call('hang')
    const waiting = worker.nextEvent('never')
    expect(await worker.kill()).toEqual({ code: null, signal: 'SIGKILL' })
    expect(worker.running).toBe(false)
    expect(isProcessAlive(worker.pid)).toBe(false)
    await expect(pending).rejects.toBeInstanceOf(WorkerExitedError)
    await expect(pending).rejects.toThrow('hang() was pending')
    await expect(waiting).rejects.toBeInstanceOf(WorkerExitedError)
    await expect(worker.call('add', 1, 1)).rejects.toBeInstanceOf(WorkerExitedError)
  })

  it('stop() runs close in the worker and exits cleanly; it is idempotent', async () => {
    const worker = await startCalc()
    const closing = worker.nextEvent('closing')
    expect(await worker.stop()).toEqual({ code: 0, signal: null })
    expect(await closing).toEqual({ pid: worker.pid })
    expect(isProcessAlive(worker.pid)).toBe(false)
    expect(await worker.stop()).toEqual({ code: 0, signal: null })
  })

  it('stop() rejects with the error close threw, once the worker has exited', async () => {
    const worker = await startCalc({ offset: 0, failClose: true })
    await expect(worker.stop()).rejects.toMatchObject({ name: 'Error', message: 'close failed' })
    expect(await worker.exited).toEqual({ code: 1, signal: null })
  })

  it('runs several workers side by side', async () => {
    const [a, b] = await Promise.all([startCalc({ offset: 1 }), startCalc({ offset: 2 })])
    expect(a?.pid).not.toBe(b?.pid)
    expect(await a?.call('add', 0, 0)).toBe(1)
    expect(await b?.call('add', 0, 0)).toBe(2)
  })

  it('rejects when the factory throws, with its error as the cause', async () => {
    const error = await forkWorker<CalcApi>(CALC_WORKER, { offset: 0, failStart: true }).catch(
      (thrown: unknown) => thrown as Error,
    )
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toContain('failed to start: RangeError: no API today')
    expect((error as Error).cause).toMatchObject({ name: 'RangeError', message: 'no API today' })
  })
})
