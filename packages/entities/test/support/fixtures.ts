// Shared by the entity engine's hard tests and their worker processes: the schemas (functions cannot cross
// IPC, so a worker builds the same ones), Redis inspection helpers and a script-reply spy. Never imports
// vitest: the worker runs outside of it.
import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import type { EntityCache, EntityCacheOptions } from '../../src'
import * as lua from '../../src/scripts'

export type AnyClient = Redis | Cluster

export interface Post {
  id: number
  userId: number
  title: string
  createdAt: number
}

export const post = (id: number, userId = 1, createdAt = id, title = `post ${id}`): Post => ({
  id,
  userId,
  title,
  createdAt,
})

export interface SchemaOptions {
  readonly entityTtl?: number
  readonly listTtl?: number
  /** Backs the entity's `load` and the lists' `load` (rows of the list's userId). */
  readonly db?: Map<number, Post>
}

/**
 * Entities `post` (in indexed lists) and `user` (in none); lists `feed` (tracked, by userId), `recent`
 * (tracked, global), `untracked` and the plain `userPosts`.
 */
export function schemas(options: SchemaOptions = {}): Pick<EntityCacheOptions, 'entities' | 'lists'> {
  const entityTtl = options.entityTtl ?? 60_000
  const listTtl = options.listTtl ?? 60_000
  const db = options.db
  return {
    entities: {
      post: {
        id: 'id',
        ttl: entityTtl,
        ...(db === undefined
          ? {}
          : { load: (ids) => ids.map((id) => db.get(Number(id))).filter((row) => row !== undefined) }),
      },
      user: { id: 'id', ttl: entityTtl },
    },
    lists: {
      feed: {
        kind: 'indexed',
        entity: 'post',
        score: 'createdAt',
        ttl: listTtl,
        trackMembership: true,
        ...(db === undefined
          ? {}
          : { load: ({ userId }) => [...db.values()].filter((row) => row.userId === Number(userId)) }),
      },
      recent: { kind: 'indexed', entity: 'post', score: 'createdAt', ttl: listTtl, trackMembership: true },
      untracked: { kind: 'indexed', entity: 'post', score: 'createdAt', ttl: listTtl },
      userPosts: { kind: 'plain', ttl: listTtl },
    },
  }
}

/** Redis keys of the layout (see src/key-layout.ts), for checking Redis directly. */
export const redisKeys = (prefix: string) => ({
  row: (id: number | string) => `${prefix}e:{post:${id}}`,
  members: (id: number | string) => `${prefix}e:{post:${id}}:m`,
  list: (name: string, params: string) => `${prefix}l:{${name}:${params}}`,
  loaded: (name: string, params: string) => `${prefix}l:{${name}:${params}}:k`,
  plain: (name: string, params: string) => `${prefix}p:{${name}:${params}}`,
})

export function masters(client: AnyClient): Redis[] {
  return client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]
}

/** Every key under `prefix` on every master, sorted. */
export async function keysUnder(client: AnyClient, prefix: string): Promise<string[]> {
  const found: string[] = []
  for (const node of masters(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== '0')
  }
  return found.sort()
}

/** Every key under `prefix` with its serialised value (DUMP): equal snapshots mean nothing changed. */
export async function snapshot(client: AnyClient, prefix: string): Promise<Record<string, string | null>> {
  const keys = await keysUnder(client, prefix)
  const out: Record<string, string | null> = {}
  for (const key of keys) {
    const dumped = await client.dumpBuffer(key)
    out[key] = dumped === null ? null : dumped.toString('hex')
  }
  return out
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 5,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const shaOf = (source: string) => createHash('sha1').update(source).digest('hex')
const SCRIPT_NAMES = new Map<string, string>()
for (const [name, source] of Object.entries(lua)) {
  SCRIPT_NAMES.set(shaOf(source), name)
  SCRIPT_NAMES.set(source, name)
}

export interface ScriptReply {
  readonly script: string
  readonly keys: readonly string[]
  readonly args: readonly string[]
  readonly reply: unknown
}

/**
 * Calls `onReply` with every engine script reply this client receives (EVALSHA, or EVAL after NOSCRIPT).
 * Returns a function that removes the spy.
 */
export function spyScripts(client: AnyClient, onReply: (reply: ScriptReply) => void): () => void {
  const target = client as unknown as Record<'evalsha' | 'eval', (...args: unknown[]) => Promise<unknown>>
  const originals = { evalsha: target.evalsha, eval: target.eval }
  for (const method of ['evalsha', 'eval'] as const) {
    const original = originals[method]
    target[method] = async function (this: unknown, ...args: unknown[]) {
      const reply = await original.apply(client, args)
      const script = SCRIPT_NAMES.get(String(args[0]))
      if (script !== undefined) {
        const count = Number(args[1])
        const rest = args.slice(2).map(String)
        onReply({ script, keys: rest.slice(0, count), args: rest.slice(count), reply })
      }
      return reply
    }
  }
  return () => {
    target.evalsha = originals.evalsha
    target.eval = originals.eval
  }
}

/** Counts the commands sent through `client` (one command, one round trip) until the returned stop(). */
export function countCommands(client: AnyClient): { readonly names: string[]; stop(): void } {
  const target = client as unknown as { sendCommand: (...args: unknown[]) => unknown }
  const original = target.sendCommand
  const names: string[] = []
  target.sendCommand = function (this: unknown, ...args: unknown[]) {
    names.push(String((args[0] as { name?: unknown }).name))
    return original.apply(client, args)
  }
  return {
    names,
    stop: () => {
      target.sendCommand = original
    },
  }
}

/** A promise with its resolve, for gating a loader. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void
  const promise = new Promise<T>((resolve) => {
    open = resolve
  })
  return { promise, open }
}

/** Where to connect: a standalone URL or a Cluster's nodes. */
export interface Connection {
  readonly redisUrl?: string
  readonly clusterNodes?: readonly { host: string; port: number }[]
}

export interface AddOutcome {
  readonly userId: number
  /** The row's epoch after this add's registration (REGISTER_MEMBER). */
  readonly epoch: number
  readonly added: boolean
}

/** An adder: addToList of row `id` to feed { userId } for each userId, each after 0..maxDelayMs. */
export function adder(cache: EntityCache, client: AnyClient) {
  const registered = new Map<string, number>()
  spyScripts(client, ({ script, args, reply }) => {
    if (script === 'REGISTER_MEMBER') registered.set(args[0]!, Number(reply))
  })
  return (id: number, userIds: readonly number[], maxDelayMs: number): Promise<AddOutcome[]> =>
    Promise.all(
      userIds.map(async (userId) => {
        const delay = Math.floor(Math.random() * (maxDelayMs + 1))
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
        const added = await cache.addToList('feed', { userId }, post(id, userId, 1000 + userId))
        const epoch = registered.get(`${cache.keyPrefix}l:{feed:userId=${userId}}`)
        if (epoch === undefined) throw new Error(`no registration seen for list ${userId}`)
        return { userId, epoch, added }
      }),
    )
}
