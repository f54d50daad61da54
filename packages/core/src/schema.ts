import type { StandardSchemaV1 } from '@standard-schema/spec'
import { InvalidOptionError, LayerCacheError } from './errors'
import type { MaybePromise } from './layer'

export type { StandardSchemaV1 }

/**
 * Options `O` with a `schema` that decides the answer's type (the overloads of get, mget, getOrSet,
 * getOrSetMany and wrap taking one). `Omit` first: intersecting a deep schema type (arktype's) with the
 * option's own `StandardSchemaV1` makes TypeScript give up (TS2589).
 */
export type WithSchema<O, S extends StandardSchemaV1> = Omit<O, 'schema'> & { readonly schema: S }

/**
 * A value a `schema` refused. From the cache, it is a counted miss (`schemaMismatches`, a
 * `schemaMismatch` event) and never reaches the caller; this error reaches the caller only when the
 * loader's own value fails, which nothing caches.
 */
export class SchemaMismatchError extends LayerCacheError {
  readonly key: string
  readonly issues: readonly StandardSchemaV1.Issue[]

  constructor(key: string, issues: readonly StandardSchemaV1.Issue[]) {
    const first = issues[0]
    const where = first?.path === undefined ? '' : ` at ${pathOf(first.path)}`
    super(
      'SCHEMA_MISMATCH',
      `The loader's value for "${key}" does not match its schema${where}: ${first?.message ?? 'invalid'}`,
    )
    this.key = key
    this.issues = issues
  }
}

function pathOf(path: ReadonlyArray<PropertyKey | StandardSchemaV1.PathSegment>): string {
  return path.map((segment) => String(typeof segment === 'object' ? segment.key : segment)).join('.')
}

/** The `schema` option checked: absent, or a Standard Schema (zod, valibot, arktype, …). */
export function readSchema(schema: unknown, where: string): StandardSchemaV1 | undefined {
  if (schema === undefined) return undefined
  const standard = (schema as { '~standard'?: { version?: unknown; validate?: unknown } } | null)?.[
    '~standard'
  ]
  if (standard === undefined || standard.version !== 1 || typeof standard.validate !== 'function') {
    throw new InvalidOptionError(
      `${where}: schema must be a Standard Schema (version 1) validator, such as a zod, valibot or arktype schema`,
    )
  }
  return schema as StandardSchemaV1
}

/** What a schema says of a value: its output, or why not. Synchronous when the validator is. */
export function validated(
  schema: StandardSchemaV1,
  value: unknown,
): MaybePromise<StandardSchemaV1.Result<unknown>> {
  return schema['~standard'].validate(value)
}

/** The loader, its value checked before anything caches it (a value the schema refuses throws). */
export function checkedLoader<C, T>(
  key: string,
  schema: StandardSchemaV1,
  loader: (context: C) => T | Promise<T>,
): (context: C) => Promise<T> {
  return async (context) => {
    const value = await loader(context)
    const result = await validated(schema, value)
    if (result.issues !== undefined) throw new SchemaMismatchError(key, result.issues)
    return value
  }
}

/**
 * A read through `schema`: the schema's output for a cached value it accepts; undefined, reported to
 * `mismatch`, for one it refuses (a counted miss: an entry an earlier deploy wrote in another shape).
 */
export async function readValidated(
  read: Promise<unknown>,
  schema: StandardSchemaV1,
  mismatch: (issues: readonly StandardSchemaV1.Issue[]) => void,
): Promise<unknown> {
  const value = await read
  if (value === undefined) return undefined
  const result = await validated(schema, value)
  if (result.issues === undefined) return result.value
  mismatch(result.issues)
  return undefined
}

/**
 * A getOrSet through `schema`: `load` with the loader checked; a cached value the schema refuses is
 * reported to `mismatch` and replaced by `reload` (a refresh, single-flighted with any load of the key),
 * whose value must pass. Answers the schema's output.
 */
export async function loadValidated<C, T>(
  key: string,
  schema: StandardSchemaV1,
  loader: (context: C) => T | Promise<T>,
  load: (loader: (context: C) => Promise<T>) => Promise<unknown>,
  reload: (loader: (context: C) => Promise<T>) => Promise<unknown>,
  mismatch: (issues: readonly StandardSchemaV1.Issue[]) => void,
): Promise<unknown> {
  const checked = checkedLoader(key, schema, loader)
  const first = await validated(schema, await load(checked))
  if (first.issues === undefined) return first.value
  mismatch(first.issues)
  const second = await validated(schema, await reload(checked))
  if (second.issues !== undefined) throw new SchemaMismatchError(key, second.issues)
  return second.value
}
