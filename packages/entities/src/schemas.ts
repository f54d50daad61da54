import {
  assertKeyText,
  assertKnownOptions,
  assertPositiveInteger,
  assertTtl,
  InvalidOptionError,
  InvalidValueError,
} from '@layercache/core'
import type { ListParams } from './params-key'

/** Any row: the default of the schemas' row type parameter (give yours to type `load` and `id`). */
// biome-ignore lint/suspicious/noExplicitAny: schemas describe the caller's own row types
export type Row = any

/** A row cached by id: `post:42`. */
export interface EntitySchema<T = Row> {
  /** The field holding the id (a string or number), or a function returning it. */
  readonly id: string | ((entity: T) => string | number)
  /** Lifetime in Redis, in ms. */
  readonly ttl: number
  /**
   * Loads rows the cache does not hold (from your database), for `getOrLoadEntity`, `getEntities` and
   * list pages whose rows expired. Rows it does not return are treated as gone.
   */
  readonly load?: (ids: readonly string[]) => Promise<readonly T[]> | readonly T[]
}

/** A list cached as one value per set of parameters (`userPosts` for `{ userId: 7 }`); no membership. */
export interface PlainListSchema<T = Row, P extends ListParams = ListParams> {
  readonly kind: 'plain'
  /** Lifetime in Redis, in ms. */
  readonly ttl: number
  /** Builds the list on a miss (your query). */
  readonly load?: (params: P) => Promise<readonly T[]> | readonly T[]
}

/**
 * A list kept in Redis as a sorted set of entity ids, ordered by a score taken from each row (highest
 * first), trimmed to `maxSize`, read a page at a time. With `trackMembership`, `invalidateEntity` removes
 * a row from every such list that holds it.
 */
export interface IndexedListSchema<T = Row, P extends ListParams = ListParams> {
  readonly kind: 'indexed'
  /** The entity type of its rows (a key of `entities`). */
  readonly entity: string
  /** The field ordering the list (a number or a Date), or a function returning a finite number. */
  readonly score: string | ((entity: T) => number)
  /** Keeps only the `maxSize` highest scores. Default 1000. */
  readonly maxSize?: number
  /** Lifetime in Redis, in ms. */
  readonly ttl: number
  /** Record which lists hold each row, so `invalidateEntity` finds them. Default false. */
  readonly trackMembership?: boolean
  /** Builds the whole list on a miss (your query): rows, in any order. */
  readonly load?: (params: P) => Promise<readonly T[]> | readonly T[]
}

export type ListSchema = PlainListSchema | IndexedListSchema

export const DEFAULT_MAX_SIZE = 1000
/** Ids become part of keys and tags, which are at most 1024 characters with the type and list name. */
export const MAX_ID_LENGTH = 512
export const MAX_MAX_SIZE = 100_000

/** Names become part of Redis keys and hash tags: keep them to a safe alphabet. */
const NAME = /^[A-Za-z0-9_.-]{1,100}$/

export function assertName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidOptionError(
      `Invalid ${what} name ${JSON.stringify(name)}: expected 1-100 characters of A-Z a-z 0-9 _ . -`,
    )
  }
  return name
}

export interface CheckedEntity {
  readonly type: string
  readonly ttl: number
  readonly idOf: (entity: Row) => string
  readonly load: EntitySchema['load']
  /**
   * Whether any indexed list holds this type: list rebuilds then need the type's invalidation counter,
   * which invalidateEntity moves (on a Cluster, one more round trip).
   */
  listed: boolean
}

export interface CheckedPlainList {
  readonly kind: 'plain'
  readonly name: string
  readonly ttl: number
  readonly load: PlainListSchema['load']
}

export interface CheckedIndexedList {
  readonly kind: 'indexed'
  readonly name: string
  readonly ttl: number
  readonly entity: CheckedEntity
  readonly scoreOf: (entity: Row) => number
  readonly maxSize: number
  readonly trackMembership: boolean
  readonly load: IndexedListSchema['load']
}

export type CheckedList = CheckedPlainList | CheckedIndexedList

/** An id as it appears in keys: ids 42 and '42' are the same row. */
export function normalizeId(id: unknown, type: string): string {
  if (typeof id === 'number' && Number.isFinite(id)) return String(id)
  if (typeof id === 'string' && id.length <= MAX_ID_LENGTH) return assertKeyText(id, `${type} id`)
  throw new InvalidValueError(
    `Invalid ${type} id ${String(id)}: expected a finite number or a non-empty string of at most ${MAX_ID_LENGTH} characters`,
  )
}

function fieldReader(field: string | ((entity: Row) => unknown), what: string): (entity: Row) => unknown {
  if (typeof field === 'function') return field as (entity: Row) => unknown
  if (typeof field === 'string' && field.length > 0) return (entity) => entity?.[field]
  throw new InvalidOptionError(`${what} must be a field name or a function`)
}

function requiredTtl(ttl: unknown, what: string): number {
  const checked = assertTtl(ttl, `${what} ttl`)
  if (checked === undefined) throw new InvalidOptionError(`${what}: ttl is required`)
  return checked
}

function checkLoad(load: unknown, what: string): void {
  if (load !== undefined && typeof load !== 'function') {
    throw new InvalidOptionError(`${what}: load must be a function`)
  }
}

export function checkEntity(type: string, schema: unknown): CheckedEntity {
  assertName(type, 'entity type')
  assertKnownOptions(schema, ['id', 'ttl', 'load'], `entity ${type}`)
  const given = (schema ?? {}) as EntitySchema
  const ttl = requiredTtl(given.ttl, `entity ${type}`)
  checkLoad(given.load, `entity ${type}`)
  const readId = fieldReader(given.id, `entity ${type}: id`)
  const idOf = (entity: Row): string => {
    if (entity === null || typeof entity !== 'object') {
      throw new InvalidValueError(
        `A ${type} must be an object, got ${entity === null ? 'null' : typeof entity}`,
      )
    }
    return normalizeId(readId(entity), type)
  }
  return { type, ttl, idOf, load: given.load, listed: false }
}

export function checkList(
  name: string,
  schema: unknown,
  entities: ReadonlyMap<string, CheckedEntity>,
): CheckedList {
  assertName(name, 'list')
  const kind = (schema as { kind?: unknown } | null)?.kind
  if (kind === 'plain') {
    assertKnownOptions(schema, ['kind', 'ttl', 'load'], `list ${name}`)
    const given = schema as PlainListSchema
    const ttl = requiredTtl(given.ttl, `list ${name}`)
    checkLoad(given.load, `list ${name}`)
    return { kind, name, ttl, load: given.load }
  }
  if (kind !== 'indexed') {
    throw new InvalidOptionError(`list ${name}: kind must be 'plain' or 'indexed'`)
  }
  assertKnownOptions(
    schema,
    ['kind', 'entity', 'score', 'maxSize', 'ttl', 'trackMembership', 'load'],
    `list ${name}`,
  )
  const given = schema as IndexedListSchema
  const entity = entities.get(given.entity)
  if (entity === undefined) {
    throw new InvalidOptionError(`list ${name}: entity ${JSON.stringify(given.entity)} is not in entities`)
  }
  const ttl = requiredTtl(given.ttl, `list ${name}`)
  const maxSize = assertPositiveInteger(given.maxSize, `list ${name} maxSize`) ?? DEFAULT_MAX_SIZE
  if (maxSize > MAX_MAX_SIZE) {
    throw new InvalidOptionError(`list ${name}: maxSize ${maxSize} is over ${MAX_MAX_SIZE}`)
  }
  if (given.trackMembership !== undefined && typeof given.trackMembership !== 'boolean') {
    throw new InvalidOptionError(`list ${name}: trackMembership must be a boolean`)
  }
  checkLoad(given.load, `list ${name}`)
  const readScore = fieldReader(given.score, `list ${name}: score`)
  const scoreOf = (row: Row): number => {
    const raw = readScore(row)
    const score = raw instanceof Date ? raw.getTime() : raw
    if (typeof score !== 'number' || !Number.isFinite(score)) {
      throw new InvalidValueError(`list ${name}: the score of a row must be a finite number or a Date`)
    }
    return score
  }
  const trackMembership = given.trackMembership === true
  entity.listed = true
  return { kind, name, ttl, entity, scoreOf, maxSize, trackMembership, load: given.load }
}
