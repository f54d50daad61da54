import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

export type Pipe = ReturnType<Redis['pipeline']>

/**
 * A call's deadline as the code sending its commands sees it: `expired` turns true once the call's timeout
 * rejected it. Whatever would send another command for the call after that (a script sent again after
 * NOSCRIPT) must not: the caller was told the call failed, and a write sent then could land after an
 * invalidation that resolved meanwhile.
 */
export interface CallDeadline {
  readonly expired: boolean
}

/** A pipeline or MULTI that can be sent. */
export interface PipelineLike {
  readonly length: number
  exec(): Promise<[Error | null, unknown][] | null>
}

/**
 * How the Redis layer's parts (key index, tag store, generation, fenced writes, node-loss recovery) talk to
 * Redis: under the layer's name, prefix, timeout and error mapping, without knowing the layer. RedisLayer
 * provides it; each part declares anything more it needs in its own file.
 */
export interface RedisIO {
  /** The layer name errors carry. */
  readonly name: string
  /** In front of every key of the layer. */
  readonly prefix: string
  readonly client: RedisClient
  readonly isCluster: boolean
  /** How long (ms) the layer waits for a pipeline of `commands` commands (one: a single command). */
  timeoutOf(commands: number): number
  /** One command under the layer's timeout and error mapping; `send` gets the call's deadline. */
  command<T>(operation: string, send: (client: RedisClient, deadline: CallDeadline) => Promise<T>): Promise<T>
  /** Sends a pipeline (or MULTI) and returns every reply, throwing the first per-command error. */
  execPipeline(operation: string, pipe: PipelineLike): Promise<unknown[]>
  /** Sends a pipeline and returns each command's [error, reply], for callers that handle errors per command. */
  execPipelineSettled(operation: string, pipe: PipelineLike): Promise<[Error | null, unknown][]>
  /**
   * Commands key by key, one pipeline per slot owner; the reply of each key's last command, in order.
   * `add` also learns how many keys share the key's pipeline.
   */
  pipelineByKey(
    operation: string,
    keys: readonly string[],
    add: (pipe: Pipe, key: string, index: number, keysInPipe: number) => void,
  ): Promise<unknown[]>
  /** One pipeline whose keys all live in one slot. */
  onIndexNode(operation: string, add: (pipe: Pipe) => void): Promise<unknown[]>
  /** SCAN MATCH `pattern` over every master, a batch at a time; `onBatch` returning 'stop' ends it. */
  scanMasters(
    operation: string,
    pattern: string,
    count: number,
    onBatch: (node: Redis, keys: string[]) => Promise<unknown>,
  ): Promise<void>
}
