/**
 * Polls `condition` until it holds, for background work that emits no event to wait for (a collector's
 * periodic tick, a value that lands in Redis). Checks the real state every `intervalMs`; fails with `what`
 * only after `timeoutMs`, generous so that a loaded machine is slow, not failing. A condition that throws
 * fails at once (an assertion inside it is checked on every poll).
 */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 10_000, intervalMs = 5 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
