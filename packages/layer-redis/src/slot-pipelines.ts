import type { Cluster, Redis } from 'ioredis'
import { groupBySlotOwner } from './pipeline-groups'
import { execChecked } from './pipeline-replies'

type Pipe = ReturnType<Redis['pipeline']>

/** Commands that all touch the slot of `slotKey` (one shard of an index, one tag set…). */
export interface SlotTask {
  readonly slotKey: string
  readonly add: (pipe: Pipe) => void
}

/**
 * Runs tasks in one pipeline on a standalone Redis, and in one pipeline per node owning their slots on a
 * Cluster, all in parallel: a round trip whatever the number of tasks. Returns each task's own replies.
 * `exec` sends a pipeline and returns its replies; it must throw on a per-command error, as the default
 * does (a pipeline's exec() resolves even when commands in it were refused).
 */
export async function execBySlotOwner(
  client: Redis | Cluster,
  tasks: readonly SlotTask[],
  exec: (pipe: Pipe) => Promise<unknown[]> = execChecked,
): Promise<unknown[][]> {
  const out: unknown[][] = new Array(tasks.length)
  if (tasks.length === 0) return out
  const groups = client.isCluster
    ? groupBySlotOwner(
        client as Cluster,
        tasks.map((task) => task.slotKey),
      )
    : [tasks.map((_, index) => index)]
  await Promise.all(
    groups.map(async (group) => {
      const pipe = client.pipeline()
      const cut = queueTasks(
        pipe,
        group.map((index) => tasks[index]!),
      )
      const replies = cut(await exec(pipe))
      group.forEach((index, j) => {
        out[index] = replies[j]!
      })
    }),
  )
  return out
}

/**
 * Queues tasks on a pipeline the caller sends with other commands around them (a standalone Redis);
 * the returned function cuts the pipeline's replies into each task's own.
 */
export function queueTasks(pipe: Pipe, tasks: readonly SlotTask[]): (replies: unknown[]) => unknown[][] {
  const bounds: [number, number][] = []
  for (const task of tasks) {
    const from = pipe.length
    task.add(pipe)
    bounds.push([from, pipe.length])
  }
  return (replies) => bounds.map(([from, to]) => replies.slice(from, to))
}
