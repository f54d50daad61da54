import { describe, expect, it } from 'vitest'
import {
  CircuitBreaker,
  type CircuitState,
  DEFAULT_FAILURE_THRESHOLD,
  DEFAULT_RETRY_AFTER_MS,
  REFUSED,
  readDegradationOption,
} from '../src/circuit-breaker'
import { InvalidOptionError } from '../src/errors'

/** A breaker on a hand-moved clock, with its transitions recorded. */
function breaker(failureThreshold = 3, retryAfterMs = 1_000) {
  const clock = { now: 0 }
  const transitions: CircuitState[] = []
  const circuit = new CircuitBreaker({
    failureThreshold,
    retryAfterMs,
    now: () => clock.now,
    onChange: (state) => transitions.push(state),
  })
  const fail = (times = 1) => {
    for (let i = 0; i < times; i++) circuit.failed(circuit.enter())
  }
  return { circuit, clock, transitions, fail }
}

describe('CircuitBreaker', () => {
  it('stays closed below the threshold, and a success resets the count of consecutive failures', () => {
    const { circuit, transitions, fail } = breaker(3)
    fail(2)
    circuit.succeeded(circuit.enter())
    fail(2)
    expect(circuit.state).toBe('closed')
    expect(circuit.enter()).not.toBe(REFUSED)
    expect(transitions).toEqual([])
  })

  it('opens after `failureThreshold` consecutive failures and refuses every call until retryAfterMs', () => {
    const { circuit, clock, transitions, fail } = breaker(3, 1_000)
    clock.now = 5_000
    fail(3)
    expect(circuit.state).toBe('open')
    expect(transitions).toEqual(['open'])
    expect(circuit.retryAt).toBe(6_000)
    for (const at of [5_000, 5_500, 5_999]) {
      clock.now = at
      expect(circuit.enter()).toBe(REFUSED)
    }
    expect(circuit.state).toBe('open')
  })

  it('after retryAfterMs lets exactly one probe through (half-open); concurrent calls are still refused', () => {
    const { circuit, clock, transitions, fail } = breaker(1, 1_000)
    fail()
    clock.now = 1_000
    const probe = circuit.enter()
    expect(probe).not.toBe(REFUSED)
    expect(circuit.state).toBe('half-open')
    expect(transitions).toEqual(['open', 'half-open'])
    expect(circuit.enter()).toBe(REFUSED)
    expect(circuit.enter()).toBe(REFUSED)
    circuit.succeeded(probe)
    expect(circuit.state).toBe('closed')
    expect(transitions).toEqual(['open', 'half-open', 'closed'])
    expect(circuit.enter()).not.toBe(REFUSED)
  })

  it('a failed probe opens the circuit again for another retryAfterMs', () => {
    const { circuit, clock, transitions, fail } = breaker(2, 1_000)
    fail(2)
    clock.now = 1_000
    circuit.failed(circuit.enter())
    expect(circuit.state).toBe('open')
    expect(transitions).toEqual(['open', 'half-open', 'open'])
    clock.now = 1_999
    expect(circuit.enter()).toBe(REFUSED)
    clock.now = 2_000
    const probe = circuit.enter()
    expect(probe).not.toBe(REFUSED)
    circuit.succeeded(probe)
    expect(circuit.state).toBe('closed')
  })

  it('a closed circuit needs the whole threshold again before it reopens', () => {
    const { circuit, clock, fail } = breaker(3, 1_000)
    fail(3)
    clock.now = 1_000
    circuit.succeeded(circuit.enter())
    fail(2)
    expect(circuit.state).toBe('closed')
    fail()
    expect(circuit.state).toBe('open')
  })

  it('ignores outcomes of calls let through before the last transition', () => {
    const { circuit, clock, transitions, fail } = breaker(2, 1_000)
    const slowSuccess = circuit.enter()
    const slowFailure = circuit.enter()
    fail(2)
    // A call issued while closed that answers late neither closes the open circuit...
    circuit.succeeded(slowSuccess)
    expect(circuit.state).toBe('open')
    clock.now = 1_000
    const probe = circuit.enter()
    // ...nor decides the probe's fate.
    circuit.succeeded(slowSuccess)
    expect(circuit.state).toBe('half-open')
    circuit.succeeded(probe)
    // And a late failure from before does not count towards reopening it.
    circuit.failed(slowFailure)
    fail()
    expect(circuit.state).toBe('closed')
    expect(transitions).toEqual(['open', 'half-open', 'closed'])
  })

  it('a probe that ends without a verdict (refused input) frees the slot for the next call', () => {
    const { circuit, clock, fail } = breaker(1, 1_000)
    fail()
    clock.now = 1_000
    const probe = circuit.enter()
    expect(circuit.enter()).toBe(REFUSED)
    circuit.released(probe)
    expect(circuit.state).toBe('half-open')
    const next = circuit.enter()
    expect(next).not.toBe(REFUSED)
    circuit.succeeded(next)
    expect(circuit.state).toBe('closed')
  })

  it('gives up on a probe that never answers after retryAfterMs, so the layer is not switched off for good', () => {
    const { circuit, clock, fail } = breaker(1, 1_000)
    fail()
    clock.now = 1_000
    circuit.enter() // never settles
    clock.now = 1_999
    expect(circuit.enter()).toBe(REFUSED)
    clock.now = 2_000
    const second = circuit.enter()
    expect(second).not.toBe(REFUSED)
    circuit.succeeded(second)
    expect(circuit.state).toBe('closed')
  })

  it('released outcomes change nothing while closed', () => {
    const { circuit, fail } = breaker(2)
    fail()
    circuit.released(circuit.enter())
    fail()
    expect(circuit.state).toBe('open')
  })
})

describe('readDegradationOption', () => {
  it('fills in the defaults', () => {
    expect(readDegradationOption(undefined)).toBeUndefined()
    expect(readDegradationOption({})).toEqual({
      retryAfterMs: DEFAULT_RETRY_AFTER_MS,
      failureThreshold: DEFAULT_FAILURE_THRESHOLD,
    })
    expect(DEFAULT_RETRY_AFTER_MS).toBe(10_000)
    expect(DEFAULT_FAILURE_THRESHOLD).toBe(5)
    expect(readDegradationOption({ retryAfterMs: 50, failureThreshold: 1 })).toEqual({
      retryAfterMs: 50,
      failureThreshold: 1,
    })
  })

  it.each([
    ['a number', 5],
    ['null', null],
    ['an array', []],
    ['an unknown key', { retryAfter: 100 }],
    ['a zero retryAfterMs', { retryAfterMs: 0 }],
    ['a negative retryAfterMs', { retryAfterMs: -1 }],
    ['a fractional retryAfterMs', { retryAfterMs: 1.5 }],
    ['a string retryAfterMs', { retryAfterMs: '100' }],
    ['a zero failureThreshold', { failureThreshold: 0 }],
    ['a fractional failureThreshold', { failureThreshold: 2.5 }],
    ['an infinite failureThreshold', { failureThreshold: Number.POSITIVE_INFINITY }],
  ])('rejects %s with InvalidOptionError', (_, value) => {
    expect(() => readDegradationOption(value as never)).toThrow(InvalidOptionError)
  })
})
