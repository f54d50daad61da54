import type { Redis } from 'ioredis'
import { formatCount } from './report'

/** What one side sent to Redis while it was being counted (client-side, on the ioredis client). */
export interface Traffic {
  /** Pipelines executed: one round trip each. */
  pipelines: number
  /** Commands sent outside a pipeline: one round trip each. */
  single: number
  /** Commands by name, pipelined or not. */
  readonly commands: Map<string, number>
}

/**
 * Counts what `client` sends until `stop()`: wraps `pipeline()` (each pipeline is one round trip when
 * executed) and `sendCommand` (a command with no pipeline stream argument is a round trip of its own;
 * ioredis routes pipelined commands through it too, with the pipeline's stream).
 */
export function countTraffic(client: Redis): { traffic: Traffic; stop(): void } {
  const traffic: Traffic = { pipelines: 0, single: 0, commands: new Map() }
  const pipeline = client.pipeline
  const sendCommand = client.sendCommand
  client.pipeline = function (this: Redis, ...args: Parameters<Redis['pipeline']>) {
    traffic.pipelines++
    return pipeline.apply(this, args)
  }
  client.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
    const [command, stream] = args
    if (stream === undefined) traffic.single++
    traffic.commands.set(command.name, (traffic.commands.get(command.name) ?? 0) + 1)
    return sendCommand.apply(this, args)
  }
  return {
    traffic,
    stop: () => {
      Reflect.deleteProperty(client, 'pipeline')
      Reflect.deleteProperty(client, 'sendCommand')
    },
  }
}

/** Round trips: pipelines executed + commands sent outside a pipeline. */
export function roundTrips(t: Traffic): number {
  return t.pipelines + t.single
}

/** '3 pipelines + 1 single (1 EVAL, 10 UNLINK, …)' */
export function describeTraffic(t: Traffic): string {
  const commands = [...t.commands]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${formatCount(n)} ${name.toUpperCase()}`)
    .join(', ')
  return `${t.pipelines} pipelines + ${t.single} single (${commands})`
}

/** How many of `fullKeys` exist in Redis (EXISTS of `chunk` keys per command, in one pipeline). */
export async function countExisting(
  client: Redis,
  fullKeys: readonly string[],
  chunk = 1000,
): Promise<number> {
  if (fullKeys.length === 0) return 0
  const pipe = client.pipeline()
  for (let i = 0; i < fullKeys.length; i += chunk) pipe.exists(...fullKeys.slice(i, i + chunk))
  const replies = (await pipe.exec()) ?? []
  let count = 0
  for (const [error, n] of replies) {
    if (error) throw error
    count += n as number
  }
  return count
}
