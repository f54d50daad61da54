// The workload of the history checker: a small keyspace where every invalidation kind overlaps every
// other (keys `a:1`…`c:4`, each tagged with its group and its number), a few entity rows, and a seeded
// generator of operations over them. An operation is plain data, so it crosses to worker processes.
import type { Prng } from './prng'

export interface KeyspaceOptions {
  /**
   * How many keys (the first ones) are hot: half of the operations pick one of them, so operations on one
   * key overlap often. Default 3.
   */
  readonly hot?: number
  /** Key groups: a key is `<group>:<n>`, tagged `grp:<group>` and `id:<n>`. Default a, b, c. */
  readonly groups?: readonly string[]
  /** Keys per group. Default 4. */
  readonly perGroup?: number
  /** Entity rows (`row:<n>` in the database, type `row` id `<n>` in the EntityCache). Default 4; 0: none. */
  readonly entities?: number
}

export interface Keyspace {
  readonly groups: readonly string[]
  readonly perGroup: number
  /** Every cache key (also the database row it caches). */
  readonly keys: readonly string[]
  readonly hot: readonly string[]
  /** Entity ids (database rows `row:<id>`). */
  readonly entityIds: readonly string[]
}

export const ENTITY_TYPE = 'row'

export function entityRow(id: string): string {
  return `${ENTITY_TYPE}:${id}`
}

export function keyspaceOf(options: KeyspaceOptions = {}): Keyspace {
  const groups = options.groups ?? ['a', 'b', 'c']
  const perGroup = options.perGroup ?? 4
  const keys = groups.flatMap((group) => Array.from({ length: perGroup }, (_, i) => `${group}:${i + 1}`))
  const entityIds = Array.from({ length: options.entities ?? 4 }, (_, i) => String(i + 1))
  return { groups, perGroup, keys, hot: keys.slice(0, options.hot ?? 3), entityIds }
}

/** The tags a key is written with. */
export function tagsOf(key: string): string[] {
  const [group, n] = key.split(':') as [string, string]
  return [`grp:${group}`, `id:${n}`]
}

export type ReadKind =
  | 'get'
  | 'getOrSet'
  | 'getOrSetSlow'
  | 'staleWhileRevalidate'
  | 'refreshAhead'
  | 'mget'
  | 'getOrSetMany'
  | 'getEntity'
  | 'getOrLoadEntity'

/** Strong kinds invalidate; `weak` ones (set, mset, setEntity, updateEntityIfExists) overwrite. */
export type UpdateKind =
  | 'delete'
  | 'mdelete'
  | 'tag'
  | 'tagsAny'
  | 'tagsAll'
  | 'prefix'
  | 'pattern'
  | 'generation'
  | 'writeThrough'
  | 'writeThroughReload'
  | 'invalidateEntity'
  | 'set'
  | 'mset'
  | 'setEntity'
  | 'updateEntityIfExists'
  | 'expire'
  | 'expireTag'
  | 'expirePrefix'

/**
 * Soft invalidations: the rows' entries stay, marked stale, for stale-while-revalidate and stale-if-error.
 * They bind the reads that only take fresh values (get, mget); a getOrSet may answer a stale value (its
 * own stale window, or a load another caller's window started), so only hard updates bind it.
 */
export const SOFT_UPDATES: ReadonlySet<UpdateKind> = new Set(['expire', 'expireTag', 'expirePrefix'])

/** Reads that only ever answer fresh values: soft invalidations bind them too. */
export const FRESH_ONLY_READS: ReadonlySet<ReadKind> = new Set(['get', 'mget'])

export const WEAK_UPDATES: ReadonlySet<UpdateKind> = new Set([
  'set',
  'mset',
  'setEntity',
  'updateEntityIfExists',
])

export type OpKind = ReadKind | UpdateKind

/** How long a loader waits before and after it reads the database, ms. */
export interface LoaderTiming {
  readonly before: number
  readonly after: number
}

export interface ReadOp {
  readonly type: 'read'
  readonly kind: ReadKind
  /** Cache keys, or entity ids for the entity kinds. */
  readonly keys: readonly string[]
  /** Database rows read, in the order of `keys`. */
  readonly rows: readonly string[]
  readonly loader: LoaderTiming
}

export interface UpdateOp {
  readonly type: 'update'
  readonly kind: UpdateKind
  /**
   * The database rows the update writes (each gets a new version) and its invalidation covers: the
   * workload always bumps every row an invalidation covers, so "covered" and "written" are one list.
   */
  readonly rows: readonly string[]
  /** Cache keys (or entity ids) the call names, for delete, mdelete, set, mset, writeThrough, entities. */
  readonly keys: readonly string[]
  readonly tags?: readonly string[]
  readonly prefix?: string
  readonly pattern?: string
  /** For writeThroughReload: the refill's loader. */
  readonly loader?: LoaderTiming
  /** For writeThrough: how long its database write takes (it commits at the end), ms. */
  readonly writeMs?: number
  /**
   * A read of a covered key the instance starts right after it issued the invalidation, without waiting
   * for it (`const d = cache.delete(k); const r = cache.get(k)`): the race of a read and an invalidation on
   * one instance.
   */
  readonly race?: ReadOp
  /**
   * Set by the runner for repairs at the end of a run (a delete of rows whose update failed): the rows are
   * not bumped again, the versions recorded are the current ones.
   */
  readonly repair?: boolean
}

export type Op = ReadOp | UpdateOp

export type OpWeights = Readonly<Partial<Record<OpKind, number>>>

export const DEFAULT_WEIGHTS: Readonly<Record<OpKind, number>> = {
  get: 10,
  getOrSet: 14,
  getOrSetSlow: 6,
  staleWhileRevalidate: 4,
  refreshAhead: 4,
  mget: 5,
  getOrSetMany: 4,
  getEntity: 4,
  getOrLoadEntity: 5,
  delete: 5,
  mdelete: 3,
  tag: 3,
  tagsAny: 2,
  tagsAll: 2,
  prefix: 3,
  pattern: 3,
  generation: 1,
  writeThrough: 3,
  writeThroughReload: 2,
  invalidateEntity: 3,
  set: 3,
  mset: 2,
  setEntity: 2,
  updateEntityIfExists: 1,
  expire: 3,
  expireTag: 2,
  expirePrefix: 2,
}

const ENTITY_KINDS: ReadonlySet<OpKind> = new Set([
  'getEntity',
  'getOrLoadEntity',
  'invalidateEntity',
  'setEntity',
  'updateEntityIfExists',
])

function loaderTiming(random: Prng, slow: boolean): LoaderTiming {
  return slow
    ? { before: random.int(5, 40), after: random.int(5, 40) }
    : { before: random.int(0, 2), after: random.int(0, 2) }
}

/** The keys a glob matches (`*`: any run, `?`: one character), for the workload's own bookkeeping. */
function globMatches(pattern: string, key: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${source}$`).test(key)
}

/** Draws operations over a keyspace; one generator per client loop, so a seed fixes every loop's ops. */
export class Workload {
  readonly #kinds: Readonly<Partial<Record<OpKind, number>>>

  constructor(
    readonly keyspace: Keyspace,
    weights: OpWeights = DEFAULT_WEIGHTS,
  ) {
    const kinds: Partial<Record<OpKind, number>> = {}
    for (const [kind, weight] of Object.entries(weights) as [OpKind, number][]) {
      if (keyspace.entityIds.length === 0 && ENTITY_KINDS.has(kind)) continue
      kinds[kind] = weight
    }
    this.#kinds = kinds
  }

  next(random: Prng): Op {
    const kind = random.weighted(this.#kinds)
    const { keys, groups, perGroup, entityIds } = this.keyspace
    const key = random.chance(0.5) ? random.pick(this.keyspace.hot) : random.pick(keys)
    const [group, n] = key.split(':') as [string, string]
    const inGroup = (g: string) => keys.filter((k) => k.startsWith(`${g}:`))
    const numbered = (m: string) => keys.filter((k) => k.endsWith(`:${m}`))
    const update = (rows: readonly string[], extra: Partial<UpdateOp> = {}): UpdateOp => ({
      type: 'update',
      kind: kind as UpdateKind,
      rows,
      keys: [],
      ...extra,
    })
    const read = (readKeys: readonly string[], rows: readonly string[], slow = false): ReadOp => ({
      type: 'read',
      kind: kind as ReadKind,
      keys: readKeys,
      rows,
      loader: loaderTiming(random, slow || random.chance(0.15)),
    })
    switch (kind) {
      case 'get':
      case 'getOrSet':
      case 'staleWhileRevalidate':
      case 'refreshAhead':
        return read([key], [key])
      case 'getOrSetSlow':
        return read([key], [key], true)
      case 'mget':
      case 'getOrSetMany': {
        const picked = random.sample(keys, random.int(2, 4))
        return read(picked, picked)
      }
      case 'getEntity':
      case 'getOrLoadEntity': {
        const id = random.pick(entityIds)
        return read([id], [entityRow(id)])
      }
      case 'delete':
      case 'set':
      case 'expire':
        return update([key], { keys: [key] })
      case 'writeThrough':
        return update([key], { keys: [key], writeMs: random.int(0, 8) })
      case 'writeThroughReload':
        return update([key], {
          keys: [key],
          writeMs: random.int(0, 8),
          loader: loaderTiming(random, random.chance(0.3)),
        })
      case 'mdelete':
      case 'mset': {
        const picked = random.sample(keys, random.int(2, 3))
        return update(picked, { keys: picked })
      }
      case 'tag':
      case 'expireTag':
        return update(inGroup(group), { tags: [`grp:${group}`] })
      case 'tagsAny': {
        const covered = [...new Set([...inGroup(group), ...numbered(n)])]
        return update(covered, { tags: [`grp:${group}`, `id:${n}`] })
      }
      case 'tagsAll':
        return update([key], { tags: [`grp:${group}`, `id:${n}`] })
      case 'prefix':
      case 'expirePrefix':
        return update(inGroup(group), { prefix: `${group}:` })
      case 'pattern': {
        const pattern = random.pick([`?:${n}`, `${group}:*`, `*:${n}`, `${group}:?`])
        return update(
          keys.filter((k) => globMatches(pattern, k)),
          { pattern },
        )
      }
      case 'generation':
        return update(keys)
      case 'invalidateEntity':
      case 'setEntity':
      case 'updateEntityIfExists': {
        const id = random.pick(entityIds)
        return update([entityRow(id)], { keys: [id] })
      }
    }
    throw new Error(`Workload: unknown kind ${String(kind)} (groups ${groups.length}, ${perGroup} each)`)
  }

  /**
   * A drop probe of the runner: a key outside the hot ones (other updates rarely cover it meanwhile), the
   * read that caches it on the other instances first, the delete of it, and the read that looks again.
   */
  probe(random: Prng): { warm: ReadOp; invalidate: UpdateOp; look: ReadOp } {
    const cold = this.keyspace.keys.filter((key) => !this.keyspace.hot.includes(key))
    const key = random.pick(cold.length > 0 ? cold : this.keyspace.keys)
    const read = (kind: ReadKind): ReadOp => ({
      type: 'read',
      kind,
      keys: [key],
      rows: [key],
      loader: { before: 0, after: 0 },
    })
    return {
      warm: read('getOrSet'),
      invalidate: { type: 'update', kind: 'delete', rows: [key], keys: [key] },
      look: read('get'),
    }
  }

  /** `op` with, at random (probability p), a racing read of one of the keys it covers. */
  withRace(op: UpdateOp, random: Prng, p: number): UpdateOp {
    if (!random.chance(p)) return op
    return { ...op, race: this.#readOf(op, random) }
  }

  /** 0 to `max` reads of keys `op` covered, to run on the same instance right after it resolved. */
  followUps(op: UpdateOp, random: Prng, max: number): ReadOp[] {
    return Array.from({ length: random.int(0, max) }, () => this.#readOf(op, random))
  }

  #readOf(op: UpdateOp, random: Prng): ReadOp {
    const row = random.pick(op.rows)
    const loader = loaderTiming(random, random.chance(0.2))
    if (row.startsWith(`${ENTITY_TYPE}:`)) {
      const id = row.slice(ENTITY_TYPE.length + 1)
      const kind = random.chance(0.5) ? 'getEntity' : 'getOrLoadEntity'
      return { type: 'read', kind, keys: [id], rows: [row], loader }
    }
    const kind = random.weighted<ReadKind>({ get: 3, getOrSet: 2, mget: 1 })
    if (kind === 'mget') {
      const keys = [...new Set([row, random.pick(this.keyspace.keys)])]
      return { type: 'read', kind, keys, rows: keys, loader }
    }
    return { type: 'read', kind, keys: [row], rows: [row], loader }
  }
}

/** A short description of an operation for traces. */
export function describeOp(op: Op): string {
  if (op.type === 'read') return `${op.kind}(${op.keys.join(', ')})`
  const args = [
    ...op.keys,
    ...(op.tags ?? []).map((tag) => `#${tag}`),
    ...(op.prefix === undefined ? [] : [`prefix ${JSON.stringify(op.prefix)}`]),
    ...(op.pattern === undefined ? [] : [`pattern ${JSON.stringify(op.pattern)}`]),
  ]
  return `${op.repair ? 'repair ' : ''}${op.kind}(${args.join(', ')}) → rows ${op.rows.join(', ')}`
}
