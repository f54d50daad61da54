// Injected latency for the history checker: every command an ioredis client (standalone, or each node
// connection of a Cluster) writes is held back for a seeded random time first. Commands issued together
// then reach Redis in another order than they were issued, on one connection ('reorder') or across
// connections only ('fifo'), which is what opens the races a quiet loopback Redis never shows.
//
// How it hooks in (ioredis 5): every command, plain, auto-pipelined, scripted (defineCommand/evalsha and
// the NOSCRIPT resend) or part of a pipeline/MULTI, ends in `Redis#sendCommand(command, stream?)`; a
// Cluster routes each command to a node connection's `sendCommand`. The hook replaces that method on the
// connection object only (never the prototype), returns the command's promise at once and calls the real
// method after the delay. The commands of one pipeline (same `stream` object) are held and released
// together, in their order, so MULTI/EXEC blocks and pipelines stay intact: a pipeline is one write.
import type { Cluster, Redis } from 'ioredis'
import type { Prng } from './prng'

export type LatencyMode = 'reorder' | 'fifo'

export interface LatencyOptions {
  /** Each command waits 0..maxMs before it is written (uniform). 0 turns the delay off. */
  readonly maxMs: number
  /**
   * 'reorder' (default): each command (or pipeline) waits its own delay, so commands issued close together
   * reach Redis in any order, also on one connection. 'fifo': delayed, but in issue order per connection.
   */
  readonly mode?: LatencyMode
  /** Where the delays come from (one stream per client, so a seed fixes them). */
  readonly random: Prng
}

export interface LatencyHandle {
  /** Commands handed to the client and not answered yet (delayed or written). */
  readonly inFlight: number
  /** Commands that were delayed so far. */
  readonly delayed: number
  /** Turns the delay off (commands pass straight through) or on again. */
  setEnabled(enabled: boolean): void
  /** Resolves once no command is in flight (checked after a macrotask, so chained commands count). */
  idle(): Promise<void>
  /**
   * Holds back the next command named one of `names` (e.g. publish, spublish), whatever its delay, until
   * `release()`; `reached` resolves once it was issued. For faults timed to a command. `args`, when given,
   * must also accept the command's arguments (as ioredis holds them: keys and values, strings or Buffers),
   * e.g. to hold the GET of one key and not another.
   */
  holdNext(names: readonly string[], args?: (args: readonly unknown[]) => boolean): CommandHold
  /** Puts the original sendCommand back on every connection. */
  remove(): void
}

export interface CommandHold {
  readonly reached: Promise<void>
  /** Sends the held command (or stops waiting for one). */
  release(): void
}

type SendCommand = (command: TrackedCommand, stream?: unknown, node?: unknown) => unknown

interface TrackedCommand {
  readonly name: string
  readonly args: readonly unknown[]
  readonly promise: Promise<unknown>
}

interface Hooked {
  readonly connection: Redis
  readonly original: SendCommand
}

function isCluster(client: Redis | Cluster): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true
}

class Latency implements LatencyHandle {
  #inFlight = 0
  #delayed = 0
  #enabled = true
  readonly #hooked: Hooked[] = []
  readonly #idleWaiters: (() => void)[] = []
  readonly #detach: (() => void)[] = []
  #hold:
    | {
        names: readonly string[]
        args: ((args: readonly unknown[]) => boolean) | undefined
        reached: () => void
        held: (() => void)[]
        released: boolean
      }
    | undefined

  constructor(
    private readonly options: LatencyOptions,
    client: Redis | Cluster,
  ) {
    if (isCluster(client)) {
      const onNode = (node: Redis) => this.#hook(node)
      client.on('+node', onNode)
      this.#detach.push(() => client.off('+node', onNode))
      for (const node of client.nodes('all')) this.#hook(node)
    } else {
      this.#hook(client)
    }
  }

  get inFlight(): number {
    return this.#inFlight
  }

  get delayed(): number {
    return this.#delayed
  }

  setEnabled(enabled: boolean): void {
    this.#enabled = enabled
  }

  async idle(): Promise<void> {
    for (;;) {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
      // A reply often triggers the next command of a chain: look again after the continuations ran.
      await new Promise((resolve) => setImmediate(resolve))
      if (this.#inFlight === 0) return
    }
  }

  holdNext(names: readonly string[], args?: (args: readonly unknown[]) => boolean): CommandHold {
    let reached = () => {}
    const promise = new Promise<void>((resolve) => {
      reached = resolve
    })
    const hold = { names, args, reached, held: [] as (() => void)[], released: false }
    this.#hold = hold
    return {
      reached: promise,
      release: () => {
        hold.released = true
        if (this.#hold === hold) this.#hold = undefined
        for (const send of hold.held.splice(0)) send()
      },
    }
  }

  /** Whether `command` is the one a hold waits for: then `send` runs on release. */
  #held(command: TrackedCommand, send: () => void): boolean {
    const hold = this.#hold
    if (hold === undefined || hold.released || !hold.names.includes(command.name)) return false
    if (hold.args !== undefined && !hold.args(command.args)) return false
    this.#hold = undefined
    hold.held.push(send)
    hold.reached()
    return true
  }

  remove(): void {
    for (const detach of this.#detach.splice(0)) detach()
    for (const { connection, original } of this.#hooked.splice(0)) {
      ;(connection as unknown as { sendCommand: SendCommand }).sendCommand = original
    }
  }

  #track(command: TrackedCommand): void {
    this.#inFlight++
    const done = () => {
      if (--this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake()
    }
    command.promise.then(done, done)
  }

  #hook(connection: Redis): void {
    const target = connection as unknown as { sendCommand: SendCommand }
    if (this.#hooked.some((hooked) => hooked.connection === connection)) return
    const original = target.sendCommand
    this.#hooked.push({ connection, original })
    const random = this.options.random.fork(`connection:${this.#hooked.length}`)
    const fifo = this.options.mode === 'fifo'
    // Pipelines in the making: their commands arrive in one synchronous loop and leave together.
    const pipelines = new Map<unknown, [TrackedCommand, unknown][]>()
    const queue: { due: number; send: () => void }[] = []
    let lastDue = 0
    let timer: NodeJS.Timeout | undefined
    const pump = () => {
      timer = undefined
      const now = performance.now()
      while (queue.length > 0 && queue[0]!.due <= now) queue.shift()!.send()
      if (queue.length > 0) timer = setTimeout(pump, queue[0]!.due - now)
    }
    const later = (send: () => void) => {
      this.#delayed++
      const wait = random.between(0, this.options.maxMs)
      if (!fifo) {
        setTimeout(send, wait)
        return
      }
      const due = Math.max(performance.now() + wait, lastDue)
      lastDue = due
      queue.push({ due, send })
      if (timer === undefined) timer = setTimeout(pump, due - performance.now())
    }
    target.sendCommand = (command, stream, node) => {
      const isPipeline = (stream as { isPipeline?: boolean } | undefined)?.isPipeline === true
      const direct = !this.#enabled || this.options.maxMs <= 0
      if (direct && (isPipeline || this.#hold === undefined))
        return original.call(connection, command, stream, node)
      this.#track(command)
      if (!isPipeline) {
        const write = () => void original.call(connection, command, stream, node)
        const send = direct ? write : () => later(write)
        if (!this.#held(command, send)) send()
        return command.promise
      }
      let held = pipelines.get(stream)
      if (held === undefined) {
        const batch: [TrackedCommand, unknown][] = []
        held = batch
        pipelines.set(stream, batch)
        later(() => {
          pipelines.delete(stream)
          for (const [queued, queuedStream] of batch) original.call(connection, queued, queuedStream)
        })
      }
      held.push([command, stream])
      return command.promise
    }
  }
}

/**
 * Delays every command `client` writes by a seeded random 0..maxMs (see the file comment). Works for a
 * Redis or a Cluster (node connections made later are hooked as they appear), for the cache's data
 * client and for a bus publisher. Do not hook a subscriber connection: it only receives.
 */
export function injectLatency(client: Redis | Cluster, options: LatencyOptions): LatencyHandle {
  return new Latency(options, client)
}
