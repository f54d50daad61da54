/**
 * The time base of every history record: epoch ms with sub-ms resolution, taken from the monotonic clock
 * and the process's start time, so it is the same in every process on the host and never follows a moved
 * Date.now (see the worker's clockOffsetMs).
 */
export function historyNow(): number {
  return performance.timeOrigin + performance.now()
}
