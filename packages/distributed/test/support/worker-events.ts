import type { WorkerHandle } from '@layercache/test-utils/worker-process'

/**
 * Resolves with the next `unverified` event of `worker` whose reason is one of `reasons`; rejects after
 * `timeoutMs` naming what it waited for.
 */
export function nextUnverified(
  worker: WorkerHandle<unknown>,
  reasons: readonly string[],
  what: string,
  timeoutMs = 10_000,
): Promise<{ reason: string; detail: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(
        new Error(`Timed out after ${timeoutMs} ms waiting for: ${what} (unverified ${reasons.join('/')})`),
      )
    }, timeoutMs)
    const off = worker.on('unverified', (data) => {
      const event = data as { reason: string; detail: string }
      if (!reasons.includes(event.reason)) return
      clearTimeout(timer)
      off()
      resolve(event)
    })
  })
}
