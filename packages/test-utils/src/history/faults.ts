// Faults for the history checker, injected while the workload runs, each recorded with its interval:
// Redis paused (SIGSTOP, then SIGCONT), every pub/sub connection killed (CLIENT KILL TYPE pubsub, on each
// master of a Cluster too, sharded subscribers included), Redis restarted empty, and a worker-process
// instance SIGKILLed (the runner starts a replacement). Clock offsets are no fault of the run: they are set
// per worker process when it starts (see RunHistoryOptions.clockOffsets).
import { setTimeout as sleep } from 'node:timers/promises'
import { rawCommand } from '../raw-command'
import { historyNow } from './clock'
import type { Prng } from './prng'
import type { FaultKind, FaultRecord, Recorder } from './recorder'
import type { HistoryTarget } from './target'

export type InjectableFault = Exclude<FaultKind, 'clock-offset'>

export interface FaultOptions {
  readonly kinds: readonly InjectableFault[]
  /** Quiet time before each fault, ms (uniform in the range). Default [300, 900]. */
  readonly gapMs?: readonly [number, number]
  /** How long Redis stays paused, ms. Default [100, 1200]. */
  readonly pauseMs?: readonly [number, number]
}

export interface FaultHooks {
  /** Kills one worker-process instance (and starts its replacement); its name, or undefined if none. */
  killInstance(random: Prng): Promise<string | undefined>
  /** Called once a fault was injected (a pause: once it is over). */
  afterFault?(kind: InjectableFault, random: Prng): void
  /**
   * Drops the pub/sub connections (`drop`) around an invalidation of one instance that was quiet until then
   * and stays quiet afterwards: its message goes out while the others resubscribe, is lost, and no later
   * message of that sender reveals the loss before the bus notices the drop (or its heartbeat does).
   */
  dropAround?(random: Prng, drop: () => Promise<FaultRecord>): Promise<void>
}

export class FaultInjector {
  readonly #gap: readonly [number, number]
  readonly #pause: readonly [number, number]

  constructor(
    private readonly options: FaultOptions,
    private readonly target: HistoryTarget,
    private readonly recorder: Recorder,
    private readonly random: Prng,
    private readonly hooks: FaultHooks,
  ) {
    this.#gap = options.gapMs ?? [300, 900]
    this.#pause = options.pauseMs ?? [100, 1200]
  }

  /** Injects faults one after the other until `done()` says the workload is over. */
  async run(done: () => boolean): Promise<void> {
    if (this.options.kinds.length === 0) return
    while (!done()) {
      await sleep(this.random.between(this.#gap[0], this.#gap[1]))
      if (done()) return
      const kind = this.random.pick(this.options.kinds)
      await this.inject(kind)
      this.hooks.afterFault?.(kind, this.random)
    }
  }

  async inject(kind: InjectableFault): Promise<void> {
    const servers = this.target.servers.filter((server) => server.running)
    if (servers.length === 0) return
    const server = this.random.pick(servers)
    const where = this.target.topology === 'cluster' ? `node :${server.port}` : `redis :${server.port}`
    switch (kind) {
      case 'pause': {
        const ms = this.random.between(this.#pause[0], this.#pause[1])
        const fault = this.recorder.fault('pause', `${where} for ${ms.toFixed(0)} ms`)
        server.pause()
        try {
          await sleep(ms)
        } finally {
          server.resume()
          fault.end = historyNow()
        }
        return
      }
      case 'pubsub-kill': {
        const drop = async () => {
          const fault = this.recorder.fault('pubsub-kill', 'CLIENT KILL TYPE pubsub on every master')
          const killed = await Promise.all(
            servers.map((node) =>
              rawCommand(node.host, node.port, 'CLIENT KILL TYPE pubsub').catch(() => '?'),
            ),
          )
          fault.end = historyNow()
          fault.detail = `CLIENT KILL TYPE pubsub on every master: ${killed.join('+')} killed`
          return fault
        }
        await (this.hooks.dropAround ? this.hooks.dropAround(this.random, drop) : drop())
        return
      }
      case 'restart-empty': {
        const fault = this.recorder.fault('restart-empty', `${where} restarted without its data`)
        try {
          await server.restart()
        } finally {
          fault.end = historyNow()
        }
        return
      }
      case 'instance-kill': {
        const fault = this.recorder.fault('instance-kill', 'SIGKILL')
        const name = await this.hooks.killInstance(this.random)
        fault.end = historyNow()
        fault.detail = name === undefined ? 'SIGKILL: no process instance' : `SIGKILL ${name}`
        return
      }
    }
  }
}
