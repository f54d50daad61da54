import { createHash } from 'node:crypto'
import { asUnavailable } from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import type { CallDeadline, RedisIO } from './redis-io'

/** One run of a script: its keys and arguments. */
export interface ScriptCall {
  readonly keys: readonly string[]
  readonly args: readonly (string | number | Buffer)[]
}

/** A Lua script and its SHA1, sent with EVALSHA (and EVAL the first time a server has not seen it). */
export class LuaScript {
  readonly sha: string

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  /**
   * EVALSHA, and EVAL when the server answers NOSCRIPT, unless the call's `deadline` expired meanwhile:
   * the caller has been told the call failed, so the NOSCRIPT answer ends it. That EVAL would be a new
   * command, sent after the failure was reported, and a write could land after an invalidation that
   * resolved in between (a server that forgot its scripts, restarted or a replica promoted, answers
   * NOSCRIPT only when it runs the command: after a pause, that is after the caller's timeout).
   */
  async run(
    client: Redis | Cluster,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
    deadline?: CallDeadline,
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args)
    } catch (error) {
      if (!isNoScript(error) || deadline?.expired) throw error
      return client.eval(this.source, keys.length, ...keys, ...args)
    }
  }

  /**
   * Runs the script once per call under the layer's timeout and error mapping: one command for one call,
   * else one pipeline of EVALSHA (one round trip), and the calls a server answered NOSCRIPT (it had not
   * seen the script: they did not run) once more with EVAL. Standalone Redis only (one node). Returns
   * each call's reply, in order.
   */
  async runAll(io: RedisIO, operation: string, calls: readonly ScriptCall[]): Promise<unknown[]> {
    if (calls.length === 1) {
      const { keys, args } = calls[0]!
      return [await io.command(operation, (client, deadline) => this.run(client, keys, args, deadline))]
    }
    const out: unknown[] = new Array(calls.length)
    let todo = calls.map((_, i) => i)
    for (const withSha of [true, false]) {
      const pipe = (io.client as Redis).pipeline()
      for (const i of todo) {
        const { keys, args } = calls[i]!
        if (withSha) pipe.evalsha(this.sha, keys.length, ...keys, ...args)
        else pipe.eval(this.source, keys.length, ...keys, ...args)
      }
      const results = await io.execPipelineSettled(operation, pipe)
      const missing: number[] = []
      results.forEach(([error, reply], j) => {
        if (error === null) out[todo[j]!] = reply
        else if (withSha && isNoScript(error)) missing.push(todo[j]!)
        else throw asUnavailable(io.name, operation, error)
      })
      if (missing.length === 0) return out
      todo = missing
    }
    return out
  }
}

function isNoScript(error: unknown): boolean {
  return String((error as Error)?.message).startsWith('NOSCRIPT')
}
