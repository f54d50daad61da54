import {
  type CacheStack,
  type GetOrSetOptions,
  InvalidOptionError,
  LayerCacheError,
  type Loader,
} from '@layercache/core'

/** The database write went through, but the cache could not be invalidated after it. */
export class CacheInvalidationAfterWriteError<T = unknown> extends LayerCacheError {
  constructor(
    readonly key: string,
    /** What the database write returned: it is committed. */
    readonly result: T,
    cause: unknown,
  ) {
    super(
      'INVALIDATION_AFTER_WRITE',
      `The write of "${key}" reached the database, but the cache could not be invalidated afterwards ` +
        '(its entry was already removed before the write, so only a load racing the write can be stale)',
      { cause },
    )
  }
}

/** The write reached the database and the cache was invalidated, but refilling it (`reload`) failed. */
export class ReloadAfterWriteError<T = unknown> extends LayerCacheError {
  constructor(
    readonly key: string,
    /** What the database write returned: it is committed. */
    readonly result: T,
    cause: unknown,
  ) {
    super(
      'RELOAD_AFTER_WRITE',
      `The write of "${key}" reached the database and the cache was invalidated, but reloading it failed ` +
        '(the key is simply not cached; the next read loads it)',
      { cause },
    )
  }
}

export interface WriteThroughOptions<T> {
  /** The database write. Runs once; its result is returned. */
  readonly write: () => Promise<T> | T
  /**
   * Reads the key's current value back from the database to refill the cache after the write (fenced
   * like any load: if another write of the key lands meanwhile, nothing is cached). Absent: the key is
   * only invalidated and the next read loads it.
   */
  readonly reload?: Loader<unknown>
  /** Options of the refill (ttl, tags, dependsOn, …). */
  readonly reloadOptions?: GetOrSetOptions
}

/**
 * Write-through for one key, in the order that cannot leave a stale entry behind when either side fails:
 *
 * 1. delete the key (if that fails, the database is not touched: a typed error, nothing changed);
 * 2. run the database write (if it fails, the cache holds nothing for the key: the next read loads);
 * 3. delete the key again: loads on any instance that began before the write (and may have read the old
 *    row) are fenced by this delete and never write back (CacheInvalidationAfterWriteError if it fails);
 * 4. optionally refill from the database with `reload`, through `refresh` (single-flighted, fenced);
 *    if that fails, ReloadAfterWriteError carries the committed result.
 *
 * Refilling with the write's own result instead would be unsafe with concurrent writers of the key: the
 * cache could end with the older one. `reload` reads what the database holds after every write.
 */
export async function writeThrough<T>(
  cache: CacheStack,
  key: string,
  options: WriteThroughOptions<T>,
): Promise<T> {
  if (options === null || typeof options !== 'object' || typeof options.write !== 'function') {
    throw new InvalidOptionError('writeThrough: options.write must be a function')
  }
  if (options.reload !== undefined && typeof options.reload !== 'function') {
    throw new InvalidOptionError('writeThrough: options.reload must be a function')
  }
  await cache.delete(key)
  const result = await options.write()
  try {
    await cache.delete(key)
  } catch (error) {
    throw new CacheInvalidationAfterWriteError(key, result, error)
  }
  if (options.reload !== undefined) {
    try {
      await cache.refresh(key, options.reload, options.reloadOptions)
    } catch (error) {
      throw new ReloadAfterWriteError(key, result, error)
    }
  }
  return result
}
