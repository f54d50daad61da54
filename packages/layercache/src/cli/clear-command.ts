import { CLEAR_ALL_CONFIRMATION, type ClearAllCacheResult, clearAllCache } from '@layercache/layer-redis'
import { prefixOption } from './cache-options'
import { jsonText, UsageError } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { parseOptions, redisCommand, wholeNumber } from './redis-command'
import { redactUrl } from './redis-connection'
import { guardWipe, WIPE_GUARD_OPTIONS, WIPE_GUARD_USAGE } from './wipe-guard'

const USAGE = `Usage: layercache clear --redis <url> --prefix <prefix> --confirm ${CLEAR_ALL_CONFIRMATION} [options]

Deletes cache keys. With --prefix: every key under it (SCAN + UNLINK in batches of at most 500, on
every master of a Cluster); keys of other prefixes are untouched. A trailing ':' is added to the prefix
when missing ("app" never matches "application:x"). Without --prefix (or --prefix ''): FLUSHDB, which
wipes the WHOLE selected Redis database on every master, keys of other applications included.

Refused (exit 2, nothing touched, no connection made) unless --confirm is exactly ${CLEAR_ALL_CONFIRMATION}
and, in production mode (--production, or NODE_ENV=production), --allow-production is given too.

Options:
  --prefix <p>               the key prefix to wipe (default '': FLUSHDB of the whole database);
                             --key-prefix <p> is the same (the name the other commands use)
${WIPE_GUARD_USAGE}
  --batch-size <n>           SCAN COUNT per step (default 500)
  --json                     print the result as JSON
${CONNECTION_USAGE}
  -h, --help                 show this help
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  prefix: { type: 'string' },
  'key-prefix': { type: 'string' },
  ...WIPE_GUARD_OPTIONS,
  'batch-size': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

function scopeOf(prefix: string): string {
  return prefix === ''
    ? 'the WHOLE Redis database (no --prefix: FLUSHDB on every master)'
    : `every key under ${JSON.stringify(prefix)}`
}

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const values = parseOptions(args, OPTIONS)
  if (values.help) return { help: true as const }
  const connection = connectionOf(values, env)
  if (values.prefix !== undefined && values['key-prefix'] !== undefined) {
    throw new UsageError('--prefix and --key-prefix are the same option: give one')
  }
  const prefix = prefixOption(values.prefix ?? values['key-prefix'], 'prefix')
  const batchSize = wholeNumber(values['batch-size'], 'batch-size', 1)
  // Before anything connects.
  const guard = guardWipe(values, env, scopeOf(prefix))
  return {
    help: false as const,
    ...connection,
    json: values.json === true,
    clear: {
      keyPrefix: prefix,
      confirm: CLEAR_ALL_CONFIRMATION as typeof CLEAR_ALL_CONFIRMATION,
      ...guard,
      batchSize,
    },
  }
}

function describe(result: ClearAllCacheResult): string {
  return result.mode === 'flushdb'
    ? `layercache clear: FLUSHDB wiped the whole Redis database (every master): ${result.deleted} keys\n`
    : `layercache clear: removed ${result.deleted} keys under ${JSON.stringify(result.keyPrefix)} ` +
        '(SCAN + UNLINK; other keys untouched)\n'
}

export const clearCommand = redisCommand({
  name: 'clear',
  summary: `delete every key under a prefix (no prefix: FLUSHDB); needs --confirm ${CLEAR_ALL_CONFIRMATION}`,
  usage: USAGE,
  parse,
  work: async (parsed, client, io) => {
    io.err.write(`layercache clear: wiping ${scopeOf(parsed.clear.keyPrefix)} at ${redactUrl(parsed.url)}\n`)
    const result = await clearAllCache({ client, ...parsed.clear })
    return parsed.json ? jsonText(result) : describe(result)
  },
})
