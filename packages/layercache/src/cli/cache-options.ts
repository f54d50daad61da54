import { InvalidKeyError } from '@layercache/core'
import { normalizePrefix } from '@layercache/layer-redis'
import { UsageError } from './cli-io'
import { type GenerationChoice, readGenerationOption } from './generation-option'

/** The options that say where a layercache deployment keeps its keys, for parseArgs. */
export const CACHE_OPTIONS = {
  'key-prefix': { type: 'string' },
  'tag-index-prefix': { type: 'string' },
  generation: { type: 'string' },
} as const

/** Their lines in a command's usage. */
export const CACHE_USAGE = [
  "  --key-prefix <p>           the RedisLayer `prefix` (default '': none); ':' is added when missing",
  '  --tag-index-prefix <p>     the RedisTagIndex `prefix`, when the stack has one (default: the index',
  '                             lives under --key-prefix)',
  '  --generation <n|current>   the stack uses CacheStack `generation`: keys live under "g<n>:";',
  '                             "current" reads the generation every instance shares',
].join('\n')

/** Where the cache lives in Redis. */
export interface CacheLocation {
  /** The RedisLayer prefix, normalised ('' or ending in ':'). */
  readonly keyPrefix: string
  /** Where the known-keys index lives: the RedisTagIndex prefix, or the layer prefix. */
  readonly indexPrefix: string
  /** Whether --tag-index-prefix was given. */
  readonly tagIndex: boolean
  readonly generation: GenerationChoice | undefined
}

/** A key prefix option, normalised as RedisLayer does; a bad one is a UsageError naming `--<option>`. */
export function prefixOption(text: string | undefined, option: string): string {
  try {
    return normalizePrefix(text ?? '')
  } catch (error) {
    if (!(error instanceof InvalidKeyError)) throw error
    throw new UsageError(`--${option}: ${error.message}`)
  }
}

export function cacheLocationOf(values: {
  readonly 'key-prefix'?: string | undefined
  readonly 'tag-index-prefix'?: string | undefined
  readonly generation?: string | undefined
}): CacheLocation {
  const keyPrefix = prefixOption(values['key-prefix'], 'key-prefix')
  const tagIndexPrefix = values['tag-index-prefix']
  if (tagIndexPrefix === '') throw new UsageError('--tag-index-prefix: expected a non-empty prefix')
  return {
    keyPrefix,
    indexPrefix: tagIndexPrefix === undefined ? keyPrefix : prefixOption(tagIndexPrefix, 'tag-index-prefix'),
    tagIndex: tagIndexPrefix !== undefined,
    generation: readGenerationOption(values.generation),
  }
}
