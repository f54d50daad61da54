import { vi } from 'vitest'

export interface FakeClock {
  advance(ms: number): void
  restore(): void
}

/**
 * A fake wall clock for TTL tests. Date and timers are faked; the real `performance.now` is made to follow
 * the fake Date too, because lru-cache may hold on to the real `performance` object, which
 * vi.useFakeTimers() replaces on globalThis rather than patching. lru-cache caches "now" for 1 ms with a
 * setTimeout that the fake timers fire as the clock moves, so always move time with `advance`.
 */
export function useFakeClock(start = 1_700_000_000_000): FakeClock {
  vi.useFakeTimers({ now: start, toFake: ['Date', 'setTimeout', 'clearTimeout'] })
  const spy = vi.spyOn(performance, 'now').mockImplementation(() => Date.now())
  return {
    advance: (ms: number) => void vi.advanceTimersByTime(ms),
    restore: () => {
      spy.mockRestore()
      vi.useRealTimers()
    },
  }
}
