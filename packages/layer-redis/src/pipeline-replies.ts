/** What ioredis's pipeline and MULTI `exec()` resolve to: an [error, reply] pair per command, in order. */
export type ExecResults = [Error | null, unknown][] | null

/**
 * The replies of a pipeline or MULTI, in command order. `exec()` resolves even when commands in it failed
 * (a Redis at maxmemory refuses a write while the deletes next to it run, WRONGTYPE…): a failure is only
 * in its pair. This throws the first one, so a refused command's slot is never read as a reply.
 * `null` (a MULTI discarded because a watched key changed) throws too.
 */
export function repliesOf(results: ExecResults): unknown[] {
  if (results === null) throw new Error('the transaction was discarded (EXEC returned nil)')
  return results.map(([error, reply]) => {
    if (error) throw error
    return reply
  })
}

/** Sends a pipeline or MULTI and returns its replies, throwing the first per-command error (repliesOf). */
export async function execChecked(pipe: { exec(): Promise<ExecResults> }): Promise<unknown[]> {
  return repliesOf(await pipe.exec())
}
