/**
 * `promise`, or a rejection with `timedOut()` if it has not settled after `ms` (the promise itself runs on;
 * its late outcome is ignored). The timer is cleared either way. Remote calls use it so nothing hangs.
 */
export function bounded<T>(promise: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
