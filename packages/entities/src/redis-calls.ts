import { asUnavailable, bounded, LayerTimeoutError } from '@layercache/core'
import { type CallDeadline, ConnectionGuard, execBySlotOwner, LuaScript } from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'

/** The name entity errors carry as their layer (stats and messages). */
export const ENTITY_LAYER = 'entities'

/** A Lua script of the engine (EVALSHA, EVAL the first time a server has not seen it). */
export const Script = LuaScript
export type Script = LuaScript

/** One script call, for a batch that runs in one pipeline per node. */
export interface ScriptCall {
  readonly script: Script
  readonly keys: readonly string[]
  readonly args: readonly (string | number)[]
}

/**
 * Every Redis call of the engine: bounded by `timeoutMs`, refused at once while a client that was
 * connected reconnects (degrade, never hang: a queued command would run late), failures typed.
 */
export class RedisCalls {
  private readonly connection: ConnectionGuard

  constructor(
    readonly client: Redis | Cluster,
    private readonly timeoutMs: number,
  ) {
    this.connection = new ConnectionGuard(client, ENTITY_LAYER)
  }

  /**
   * Connections the client lost so far (a Cluster: any node's). An epoch read before a loss cannot fence a
   * write sent after it: Redis may have restarted empty, losing the epochs invalidations moved meanwhile
   * (a missing epoch reads as 0, like one never moved).
   */
  get losses(): number {
    return this.connection.losses
  }

  /** One script (EVALSHA, loading it with EVAL the first time a server has not seen it). */
  run<T>(operation: string, call: ScriptCall): Promise<T> {
    const { script, keys, args } = call
    return this.bound(
      operation,
      async (deadline) => (await script.run(this.client, keys, args, deadline)) as T,
    )
  }

  /**
   * Many script calls, each in one slot: one pipeline per node, in parallel. Replies in call order. One
   * script that failed (a full Redis refused its first write) rejects the whole call; the others may have run.
   */
  runMany<T>(operation: string, calls: readonly ScriptCall[]): Promise<T[]> {
    if (calls.length === 0) return Promise.resolve([])
    // One call (a row read on a miss): EVALSHA, not a pipeline carrying the script's source.
    if (calls.length === 1) return this.run<T>(operation, calls[0]!).then((reply) => [reply])
    return this.bound(operation, async () => {
      const replies = await execBySlotOwner(
        this.client,
        calls.map((call) => ({
          slotKey: call.keys[0]!,
          add: (pipe) => {
            pipe.eval(call.script.source, call.keys.length, ...call.keys, ...call.args)
          },
        })),
      )
      return replies.map((reply) => reply[0] as T)
    })
  }

  /** A plain command (GET, INCR, DEL…). */
  command<T>(operation: string, send: (client: Redis | Cluster) => Promise<T>): Promise<T> {
    return this.bound(operation, () => send(this.client))
  }

  /** Runs `work` under the timeout; `work` sees the deadline expire when the timeout rejects the call. */
  private bound<T>(operation: string, work: (deadline: CallDeadline) => Promise<T>): Promise<T> {
    const refusal = this.connection.refusal(operation)
    if (refusal !== undefined) return Promise.reject(refusal)
    const deadline = { expired: false }
    const timedOut = () => {
      deadline.expired = true
      return new LayerTimeoutError(ENTITY_LAYER, operation, this.timeoutMs)
    }
    return bounded(work(deadline), this.timeoutMs, timedOut).catch((error: unknown) => {
      throw asUnavailable(ENTITY_LAYER, operation, error)
    })
  }
}
