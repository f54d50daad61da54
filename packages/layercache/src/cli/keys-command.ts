import { compileGlob, InvalidPatternError, literalPrefixOf } from '@layercache/core'
import type { IndexShard, RedisClient } from '@layercache/layer-redis'
import { CACHE_OPTIONS, CACHE_USAGE, cacheLocationOf } from './cache-options'
import { jsonText, printable, UsageError } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { resolveGeneration } from './generation-option'
import { hasIndex, lexRange, readIndexView, sourcesOf } from './index-view'
import { parseOptions, redisCommand, wholeNumber } from './redis-command'
import { scanCacheKeys } from './scan-keys'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 100_000
const PAGE = 500

const USAGE = `Usage: layercache keys --redis <url> [--key-prefix <p>] [--match <glob>] [--limit <n>]
         [options]

Lists cache keys under the key prefix, without it (and without "g<n>:" with --generation), sorted,
at most --limit of them. They come from the sharded known-keys index (keys whose expiry passed are
left out); with no index (keyIndex: false, or nothing written yet), from SCAN. Reads only. One key
per line; a control character in a key (only a key written to Redis by other means can hold one) is
printed as \\xHH, a line feed too (in JSON, \\u00XX).

Options:
  --match <glob>             only keys matching it: * any run of characters, ? exactly one
  --limit <n>                at most this many keys, 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})
${CACHE_USAGE}
  --json                     print { keys, source, truncated } as JSON
${CONNECTION_USAGE}
  -h, --help                 show this help

Examples:
  layercache keys --redis redis://127.0.0.1:6379 --key-prefix myapp --match 'product:*' --limit 20
  layercache keys --redis redis://127.0.0.1:6379 --key-prefix myapp --generation current --json
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CACHE_OPTIONS,
  match: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const values = parseOptions(args, OPTIONS)
  if (values.help) return { help: true as const }
  const connection = connectionOf(values, env)
  const limit = wholeNumber(values.limit, 'limit', 1) ?? DEFAULT_LIMIT
  if (limit > MAX_LIMIT) throw new UsageError(`--limit: at most ${MAX_LIMIT}, got ${limit}`)
  let test: ((key: string) => boolean) | undefined
  if (values.match !== undefined) {
    try {
      test = compileGlob(values.match)
    } catch (error) {
      if (!(error instanceof InvalidPatternError)) throw error
      throw new UsageError(`--match: ${error.message}`)
    }
  }
  return {
    help: false as const,
    ...connection,
    location: cacheLocationOf(values),
    match: values.match,
    test,
    limit,
    json: values.json === true,
  }
}

export interface KeyListing {
  readonly keys: string[]
  readonly source: 'index' | 'scan'
  /** More keys match than were listed. */
  readonly truncated: boolean
}

/** Up to `limit` + 1 live members of one shard under `from`, in order, that pass `test`. */
async function fromShard(
  client: RedisClient,
  shard: IndexShard,
  from: string,
  strip: number,
  test: (key: string) => boolean,
  limit: number,
): Promise<string[]> {
  const [min, max] = lexRange(from)
  const found: string[] = []
  let cursor = min
  for (;;) {
    const page = await client.zrangebylex(shard.keysKey, cursor, max, 'LIMIT', 0, PAGE)
    const matching = page.filter((full) => test(full.slice(strip)))
    if (matching.length > 0) {
      // Index entries outlive their key by up to a minute (collection): leave out what expired.
      const now = Date.now()
      const expiries = await client.zmscore(shard.expiryKey, ...matching)
      matching.forEach((full, i) => {
        const expiry = expiries[i]
        if (expiry === null || expiry === undefined || Number(expiry) >= now) found.push(full)
      })
    }
    if (found.length > limit || page.length < PAGE) return found
    cursor = `(${page[page.length - 1]}`
  }
}

export async function listKeys(
  client: RedisClient,
  parsed: Extract<ReturnType<typeof parse>, { help: false }>,
): Promise<KeyListing> {
  const { keyPrefix, indexPrefix, generation: choice } = parsed.location
  const generation = await resolveGeneration(client, keyPrefix, choice)
  const within = generation?.prefix ?? ''
  const strip = keyPrefix.length + within.length
  const test = parsed.test ?? (() => true)
  const limit = parsed.limit
  const view = await readIndexView(client, keyPrefix, indexPrefix)
  const found = new Set<string>()
  if (hasIndex(view)) {
    const from = keyPrefix + within + (parsed.match === undefined ? '' : literalPrefixOf(parsed.match))
    const perShard = await Promise.all(
      sourcesOf(view).map((shard) => fromShard(client, shard, from, strip, test, limit)),
    )
    for (const fulls of perShard) for (const full of fulls) found.add(full)
  } else {
    await scanCacheKeys(client, keyPrefix, within, (fulls) => {
      for (const full of fulls) if (test(full.slice(strip))) found.add(full)
      return found.size <= limit
    })
  }
  const keys = [...found].map((full) => full.slice(strip)).sort()
  return {
    keys: keys.slice(0, limit),
    source: hasIndex(view) ? 'index' : 'scan',
    truncated: keys.length > limit,
  }
}

export const keysCommand = redisCommand({
  name: 'keys',
  summary: 'list cache keys under a prefix (from the key index; SCAN without one), bounded by --limit',
  usage: USAGE,
  parse,
  work: async (parsed, client, io) => {
    const listing = await listKeys(client, parsed)
    if (parsed.json) return jsonText(listing)
    const source = listing.source === 'index' ? 'from the known-keys index' : 'by SCAN (no key index)'
    io.err.write(
      `layercache keys: ${listing.keys.length} keys ${source}` +
        (listing.truncated ? `; more match: raise --limit (now ${parsed.limit})` : '') +
        '\n',
    )
    // One line per key, whatever a key read from Redis holds.
    return listing.keys.map((key) => `${printable(key)}\n`).join('')
  },
})
