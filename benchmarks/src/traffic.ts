import { AsyncLocalStorage } from 'node:async_hooks'
import type { Redis } from 'ioredis'
import { median } from './measure'
import { formatCount } from './report'

/**
 * What one side sent to Redis while it was being counted (client-side, on the ioredis client).
 *
 * A round trip is one request written to the connection: a command sent on its own (a script call is
 * one command), or one pipeline flush (an explicit `pipeline()`, a `multi()` transaction or an
 * auto-pipelining batch: every command ioredis sends with the same pipeline stream). Commands sent on
 * their own in the same tick count one each, even though they may share a TCP segment: a round trip is
 * counted when the code asks for one, not when the network happens to coalesce. countPerCall also counts
 * the latency view, "waits": a command sent after one of the call's replies arrived starts a new one.
 */
export interface Traffic {
  /** Pipeline flushes (pipeline, multi/exec, auto-pipelining batch): one round trip each. */
  pipelines: number
  /** Commands sent outside a pipeline: one round trip each. */
  single: number
  /** Commands by name, pipelined or not. */
  readonly commands: Map<string, number>
}

function newTraffic(): Traffic {
  return { pipelines: 0, single: 0, commands: new Map() }
}

type SendCommand = Redis['sendCommand']

/**
 * Replaces `client.sendCommand` with `tally(command, stream)` in front of the real one, until the
 * returned function is called. ioredis routes every command through it: a standalone command without a
 * stream, a pipelined one (explicit, transaction or auto-pipelined) with its pipeline's stream object,
 * the same object for every command of one flush.
 */
function wrapSendCommand(
  client: Redis,
  tally: (command: Parameters<SendCommand>[0], stream: Parameters<SendCommand>[1]) => void,
): () => void {
  const sendCommand = client.sendCommand
  client.sendCommand = function (this: Redis, ...args: Parameters<SendCommand>) {
    tally(args[0], args[1])
    return sendCommand.apply(this, args)
  }
  return () => {
    Reflect.deleteProperty(client, 'sendCommand')
  }
}

function record(
  traffic: Traffic,
  flushes: WeakSet<object>,
  command: Parameters<SendCommand>[0],
  stream: unknown,
) {
  if (stream === undefined || stream === null) traffic.single++
  else if (!flushes.has(stream as object)) {
    flushes.add(stream as object)
    traffic.pipelines++
  }
  traffic.commands.set(command.name, (traffic.commands.get(command.name) ?? 0) + 1)
}

/**
 * Counts everything `client` sends until `stop()` (whoever sends it: a background task of the library
 * on the same client is counted too; see countPerCall for counting one call's own requests).
 */
export function countTraffic(client: Redis): { traffic: Traffic; stop(): void } {
  const traffic = newTraffic()
  const flushes = new WeakSet<object>()
  const stop = wrapSendCommand(client, (command, stream) => record(traffic, flushes, command, stream))
  return { traffic, stop }
}

/** Round trips: pipeline flushes + commands sent outside a pipeline. */
export function roundTrips(t: Traffic): number {
  return t.pipelines + t.single
}

/** '3 pipelines + 1 single (1 EVAL, 10 UNLINK, …)' */
export function describeTraffic(t: Traffic): string {
  return `${t.pipelines} pipelines + ${t.single} single (${describeCommands(t.commands)})`
}

/** '1 EVALSHA, 2 ZADD', counts divided by `per` (e.g. per call) and shown with up to 2 decimals. */
export function describeCommands(commands: ReadonlyMap<string, number>, per = 1): string {
  const parts = [...commands]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${formatPerCall(n / per)} ${name.toUpperCase()}`)
  return parts.length === 0 ? 'none' : parts.join(', ')
}

function formatPerCall(n: number): string {
  return Number.isInteger(n) ? formatCount(n) : n.toFixed(2).replace(/0$/, '')
}

/** Round trips of each of a series of calls, attributed to the call that caused them. */
export interface PerCallTraffic {
  /** Round trips of call i (its own requests only: pipeline flushes + commands sent on their own). */
  readonly trips: readonly number[]
  /**
   * Waits of call i: how many times it sent something after one of its replies had arrived (since its
   * previous command). Commands sent together count once here whether pipelined or not: the latency view
   * of a round trip, never more than `trips`.
   */
  readonly waits: readonly number[]
  /** Commands of all counted calls together, by name. */
  readonly commands: ReadonlyMap<string, number>
}

/**
 * Runs `op(0)` … `op(calls - 1)` one after the other and counts, per call, the round trips that call
 * caused: every command is attributed through AsyncLocalStorage to the call whose async context sent
 * it, so work the library does on its own timers (key-index collection) on the same client is left
 * out, and work a call leaves behind (a fire-and-forget cleanup) is counted for it if it is sent within
 * `settleMs` after the last call. `prepare(i)` runs before call i, outside the count (e.g. writing the key
 * a delete then removes). Not for timed code: the hooks slow every promise while enabled.
 */
export async function countPerCall(
  client: Redis,
  calls: number,
  op: (i: number) => Promise<unknown>,
  prepare?: (i: number) => Promise<unknown>,
  settleMs = 50,
): Promise<PerCallTraffic> {
  const storage = new AsyncLocalStorage<number>()
  const perCall = Array.from({ length: calls }, () => newTraffic())
  const waits = new Array<number>(calls).fill(0)
  const replied = new Array<boolean>(calls).fill(true)
  const commands = new Map<string, number>()
  const flushes = new WeakSet<object>()
  const stop = wrapSendCommand(client, (command, stream) => {
    const i = storage.getStore()
    if (i === undefined) return
    record(perCall[i]!, flushes, command, stream)
    commands.set(command.name, (commands.get(command.name) ?? 0) + 1)
    if (replied[i]) {
      waits[i]!++
      replied[i] = false
    }
    const answered = () => {
      replied[i] = true
    }
    command.promise.then(answered, answered)
  })
  try {
    for (let i = 0; i < calls; i++) {
      if (prepare !== undefined) await prepare(i)
      await storage.run(i, () => op(i))
    }
    await new Promise((resolve) => setTimeout(resolve, settleMs))
  } finally {
    stop()
    storage.disable()
  }
  return { trips: perCall.map(roundTrips), waits, commands }
}

/** Median round trips per call. */
export function medianTrips(t: PerCallTraffic): number {
  return median(t.trips)
}

/** Median waits per call. */
export function medianWaits(t: PerCallTraffic): number {
  return median(t.waits)
}

/** '20 calls: 2 waits each' or '20 calls: 2 (×19), 3 (×1)'. */
export function describeWaits(t: PerCallTraffic): string {
  const byCount = new Map<number, number>()
  for (const n of t.waits) byCount.set(n, (byCount.get(n) ?? 0) + 1)
  const counts = [...byCount].sort(([a], [b]) => a - b)
  if (t.waits.length === 1) return `${t.waits[0]} wait${t.waits[0] === 1 ? '' : 's'}`
  const spread =
    counts.length === 1
      ? `${counts[0]![0]} wait${counts[0]![0] === 1 ? '' : 's'} each`
      : counts.map(([n, times]) => `${n} (×${times})`).join(', ')
  return `${t.waits.length} calls: ${spread}`
}

/**
 * '20 calls: 1 round trip each' or '20 calls: 1 (×19), 3 (×1)', with the commands per call; for one
 * call: '6 round trips (1 EVAL, 20 UNLINK)'.
 */
export function describePerCall(t: PerCallTraffic): string {
  const byCount = new Map<number, number>()
  for (const n of t.trips) byCount.set(n, (byCount.get(n) ?? 0) + 1)
  const counts = [...byCount].sort(([a], [b]) => a - b)
  const calls = t.trips.length
  if (calls === 1) {
    const n = t.trips[0]!
    return `${n} round trip${n === 1 ? '' : 's'} (${describeCommands(t.commands)})`
  }
  const spread =
    counts.length === 1
      ? `${counts[0]![0]} round trip${counts[0]![0] === 1 ? '' : 's'} each`
      : counts.map(([n, times]) => `${n} (×${times})`).join(', ')
  return `${calls} calls: ${spread}; commands per call: ${describeCommands(t.commands, calls)}`
}

/** `INFO commandstats` as calls per command name (`cmdstat_<name>:calls=<n>,…`). */
async function commandStats(client: Redis): Promise<Map<string, number>> {
  const text = await client.info('commandstats')
  const out = new Map<string, number>()
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(match[1]!, Number(match[2]))
  return out
}

/** What the server executed per call (commands run by scripts and inside MULTI included). */
export interface ServerCommands {
  /** Commands the server executed during call i (INFO excluded). */
  readonly totals: readonly number[]
  /** The commands of a call whose total is the median, by name. */
  readonly typical: ReadonlyMap<string, number>
}

/**
 * Runs `op(0)` … `op(calls - 1)` one after the other, each between two `INFO commandstats` on `control`,
 * and returns what the server executed in between, INFO itself left out (`prepare(i)` runs before the
 * first INFO). Server-wide counters: only
 * meaningful on a Redis nobody else uses (the throwaway server of the run); a background task of the
 * library that happens to run during a call adds to that call, hence the median.
 */
export async function countServerCommands(
  control: Redis,
  calls: number,
  op: (i: number) => Promise<unknown>,
  prepare?: (i: number) => Promise<unknown>,
): Promise<ServerCommands> {
  const totals: number[] = []
  const breakdowns: Map<string, number>[] = []
  for (let i = 0; i < calls; i++) {
    if (prepare !== undefined) await prepare(i)
    const before = await commandStats(control)
    await op(i)
    const after = await commandStats(control)
    const delta = new Map<string, number>()
    let total = 0
    for (const [name, n] of after) {
      if (name === 'info') continue
      const d = n - (before.get(name) ?? 0)
      if (d <= 0) continue
      delta.set(name, d)
      total += d
    }
    totals.push(total)
    breakdowns.push(delta)
  }
  const mid = median(totals)
  const at = totals.findIndex((t) => t >= mid)
  return { totals, typical: breakdowns[at]! }
}

/** 'median 5 (4–7) over 20 calls; a median call: 1 EVALSHA, 1 SET, …' */
export function describeServerCommands(s: ServerCommands): string {
  return (
    `median ${formatCount(median(s.totals))} (${Math.min(...s.totals)}–${Math.max(...s.totals)}) over ` +
    `${s.totals.length} calls; a median call: ${describeCommands(s.typical)}`
  )
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
