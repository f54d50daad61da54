import { InvalidOptionError } from '../errors'
import { assertKnownOptions, assertPositiveInteger } from '../validation'

export const DEFAULT_MAX_TRACKED_KEYS = 100_000

/**
 * Options shared by the in-process indexes. `onEvict(key)` is called after a key was dropped to make
 * room; the owner must then drop that key from its cache too, because an untracked key would survive
 * the invalidation that should have removed it.
 */
export interface BoundOptions {
  maxKeys?: number
  onEvict?: (key: string) => void
}

export interface Bound {
  maxKeys: number
  onEvict: ((key: string) => void) | undefined
}

export function readBoundOptions(options: BoundOptions | undefined, where: string): Bound {
  assertKnownOptions(options, ['maxKeys', 'onEvict'], where)
  const maxKeys = assertPositiveInteger(options?.maxKeys, `${where} maxKeys`) ?? DEFAULT_MAX_TRACKED_KEYS
  const onEvict = options?.onEvict
  if (onEvict !== undefined && typeof onEvict !== 'function') {
    throw new InvalidOptionError(`${where}: onEvict must be a function, got ${typeof onEvict}`)
  }
  return { maxKeys, onEvict }
}
