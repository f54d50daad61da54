import { assertTags, CacheStack, validatePattern } from '@layercache/core'
import { RedisInvalidationBus, RedisTagIndex } from '@layercache/distributed'
import { CLEAR_ALL_CONFIRMATION, type RedisClient, RedisLayer } from '@layercache/layer-redis'
import { CACHE_OPTIONS, CACHE_USAGE, type CacheLocation, cacheLocationOf } from './cache-options'
import { type CliIo, jsonText, UsageError } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { recordedGeneration } from './generation-option'
import { hasIndex, readIndexView } from './index-view'
import { parseOptions, redisCommand, wholeNumber } from './redis-command'
import { connectRedis } from './redis-connection'
import { guardWipe, WIPE_GUARD_OPTIONS, WIPE_GUARD_USAGE } from './wipe-guard'

const DEFAULT_CHANNEL = 'layercache:invalidation'
const SECRET_ENV = 'LAYERCACHE_BUS_SECRET'

const USAGE = `Usage: layercache invalidate --redis <url> [--key-prefix <p>]
         (--tag <t>... | --prefix <p> | --pattern <glob>) [options]

Invalidates through the library itself, as an app instance would: a CacheStack over a RedisLayer with
the deployment's prefix, key and tag index and generation removes the keys from Redis (tag sets and
index included, loads in flight fenced) and announces the invalidation on the signed invalidation bus,
so every running instance drops the keys from its memory layer. Prints how many keys were removed.
Bad input is refused (exit 2) before anything changes. The layer's own keys (starting with '~' after
the key prefix: indexes, tag sets, counters) are never matched.

What to invalidate (exactly one):
  --tag <t>                  keys carrying the tag; repeat for several tags (see --tag-mode)
  --tag-mode <any|all>       with several tags: keys carrying any of them (default) or all of them
  --prefix <p>               keys starting with <p> ('' : every key of the namespace)
  --pattern <glob>           keys matching the glob: * any run of characters, ? exactly one

The whole cache (--prefix '', or a --pattern of wildcards only, such as '*'), in the namespace if one is
given, is guarded as \`layercache clear\` is: refused (exit 2, nothing touched, no connection made) unless
--confirm is exactly ${CLEAR_ALL_CONFIRMATION} and, in production mode (--production, or
NODE_ENV=production), --allow-production is given too.
${WIPE_GUARD_USAGE}

Where (as the app's CacheStack is configured):
${CACHE_USAGE}
  --namespace <ns>           the stack namespace (cache.namespace(ns)) the tag, prefix or pattern is in
  --known-key-shards <n>     the knownKeysShards of the app's RedisTagIndex or RedisLayer (1 to 1024;
                             the count recorded in Redis wins)

The invalidation bus (as the app's RedisInvalidationBus is configured):
  --bus-channel <name>       its channel (default ${DEFAULT_CHANNEL})
  --signing-secret <s>       its signingSecret; better: the ${SECRET_ENV} environment variable,
                             which keeps the secret off the command line
  --no-bus                   announce nothing: running instances keep their memory copies until
                             their own TTL (only when the app runs without a bus)

Output and connection:
  --json                     print { removed, kind, bus } as JSON
${CONNECTION_USAGE}
  -h, --help                 show this help

Examples:
  LAYERCACHE_BUS_SECRET=… layercache invalidate --redis rediss://cache.internal:6380 \\
    --key-prefix myapp --bus-channel myapp:invalidation --tag category:tech
  layercache invalidate --redis redis://127.0.0.1:6379 --key-prefix myapp --prefix 'user:42:'
  layercache invalidate --redis redis://127.0.0.1:6379 --key-prefix myapp \\
    --tag-index-prefix myapp:tags --generation current --pattern 'report:2024-04-*'
  layercache invalidate --redis redis://127.0.0.1:6379 --key-prefix myapp --prefix '' \\
    --confirm ${CLEAR_ALL_CONFIRMATION}
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CACHE_OPTIONS,
  tag: { type: 'string', multiple: true },
  'tag-mode': { type: 'string' },
  prefix: { type: 'string' },
  pattern: { type: 'string' },
  namespace: { type: 'string' },
  'known-key-shards': { type: 'string' },
  'bus-channel': { type: 'string' },
  'signing-secret': { type: 'string' },
  'no-bus': { type: 'boolean' },
  ...WIPE_GUARD_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

type Target =
  | { readonly kind: 'tags'; readonly tags: readonly string[]; readonly mode: 'any' | 'all' }
  | { readonly kind: 'prefix'; readonly prefix: string }
  | { readonly kind: 'pattern'; readonly pattern: string }

/** Core's checks, as a UsageError naming the option. */
function checked<T>(option: string, check: () => T): T {
  try {
    return check()
  } catch (error) {
    if (error instanceof Error && 'code' in error) throw new UsageError(`${option}: ${error.message}`)
    throw error
  }
}

function targetOf(values: {
  tag?: string[] | undefined
  'tag-mode'?: string | undefined
  prefix?: string | undefined
  pattern?: string | undefined
}): Target {
  const given = [
    values.tag === undefined ? undefined : '--tag',
    values.prefix === undefined ? undefined : '--prefix',
    values.pattern === undefined ? undefined : '--pattern',
  ].filter((option) => option !== undefined)
  if (given.length !== 1) {
    throw new UsageError(
      given.length === 0
        ? 'say what to invalidate: --tag <t>, --prefix <p> or --pattern <glob>'
        : `give one of --tag, --prefix and --pattern, not ${given.join(' and ')}`,
    )
  }
  const mode = values['tag-mode']
  if (mode !== undefined && values.tag === undefined) throw new UsageError('--tag-mode goes with --tag')
  if (mode !== undefined && mode !== 'any' && mode !== 'all') {
    throw new UsageError(`--tag-mode: expected any or all, got ${JSON.stringify(mode)}`)
  }
  if (values.tag !== undefined) {
    const tags = checked('--tag', () => assertTags(values.tag))!
    return { kind: 'tags', tags, mode: mode ?? 'any' }
  }
  if (values.prefix !== undefined) return { kind: 'prefix', prefix: values.prefix }
  return { kind: 'pattern', pattern: checked('--pattern', () => validatePattern(values.pattern)) }
}

/**
 * Whether `target` covers every key of its scope: the prefix '', or a pattern of wildcards only ('*' and
 * '?', which leave out at most keys shorter than its '?'s).
 */
function coversEverything(target: Target): boolean {
  if (target.kind === 'prefix') return target.prefix === ''
  return target.kind === 'pattern' && /^[*?]+$/.test(target.pattern)
}

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const values = parseOptions(args, OPTIONS)
  if (values.help) return { help: true as const }
  const connection = connectionOf(values, env)
  const target = targetOf(values)
  const location = cacheLocationOf(values)
  if (coversEverything(target)) {
    // Before anything connects, as clear does.
    guardWipe(
      values,
      env,
      'every key of the cache ' +
        (values.namespace === undefined ? '' : `in namespace ${JSON.stringify(values.namespace)} `) +
        `under key prefix ${JSON.stringify(location.keyPrefix)}`,
    )
  }
  const noBus = values['no-bus'] === true
  if (noBus && (values['bus-channel'] !== undefined || values['signing-secret'] !== undefined)) {
    throw new UsageError('--no-bus: there is no bus to give a channel or a signing secret to')
  }
  const channel = values['bus-channel'] ?? DEFAULT_CHANNEL
  if (channel === '') throw new UsageError('--bus-channel: expected a non-empty channel name')
  const secret = values['signing-secret'] ?? (env[SECRET_ENV] === '' ? undefined : env[SECRET_ENV])
  return {
    help: false as const,
    ...connection,
    location,
    target,
    namespace: values.namespace,
    knownKeysShards: wholeNumber(values['known-key-shards'], 'known-key-shards', 1),
    bus: noBus ? undefined : { channel, secret },
    json: values.json === true,
  }
}

type Parsed = Extract<ReturnType<typeof parse>, { help: false }>

/** The generation floor the stack is built with (`generation` option), or none: it never moves it. */
async function generationOption(client: RedisClient, location: CacheLocation): Promise<number | undefined> {
  const choice = location.generation
  if (choice === undefined) return undefined
  const recorded = (await recordedGeneration(client, location.keyPrefix)) ?? 0
  if (choice !== 'current' && choice !== recorded) {
    // A floor above the shared number would raise it: every instance would move to an empty generation.
    throw new UsageError(
      `--generation ${choice}: the current generation is ${recorded}; invalidation only works in the ` +
        'current one (pass --generation current)',
    )
  }
  return recorded
}

function describeTarget(target: Target): string {
  switch (target.kind) {
    case 'tags':
      return target.tags.length === 1
        ? `tag ${JSON.stringify(target.tags[0])}`
        : `tags ${target.tags.map((tag) => JSON.stringify(tag)).join(', ')} (${target.mode})`
    case 'prefix':
      return `prefix ${JSON.stringify(target.prefix)}${coversEverything(target) ? ' (every key)' : ''}`
    case 'pattern':
      return `pattern ${JSON.stringify(target.pattern)}${coversEverything(target) ? ' (every key)' : ''}`
  }
}

async function invalidate(parsed: Parsed, client: RedisClient, io: CliIo): Promise<string> {
  const { location, knownKeysShards } = parsed
  const [generation, view] = await Promise.all([
    generationOption(client, location),
    readIndexView(client, location.keyPrefix, location.indexPrefix),
  ])
  if (location.generation === undefined && parsed.target.kind !== 'tags') {
    const recorded = await recordedGeneration(client, location.keyPrefix)
    if (recorded !== undefined) {
      io.err.write(
        `layercache invalidate: note: this prefix records generation ${recorded}; if the stack uses ` +
          'CacheStack `generation`, its keys live under "g<n>:": pass --generation current\n',
      )
    }
  }
  // Without an index (keyIndex: false), prefix and pattern invalidations SCAN, as such an app's do.
  const keyIndex = location.tagIndex || hasIndex(view)
  const layer = new RedisLayer({
    client,
    prefix: location.keyPrefix,
    commandTimeout: 10_000,
    keyIndex,
    ...(knownKeysShards !== undefined && !location.tagIndex && keyIndex ? { knownKeysShards } : {}),
  })
  const tagIndex = location.tagIndex
    ? new RedisTagIndex({
        client,
        prefix: location.indexPrefix,
        ...(knownKeysShards === undefined ? {} : { knownKeysShards }),
      })
    : undefined
  let subscriber: RedisClient | undefined
  let bus: RedisInvalidationBus | undefined
  let stack: CacheStack | undefined
  try {
    if (parsed.bus !== undefined) {
      subscriber = await connectRedis(parsed, { shardedSubscriber: true })
      bus = new RedisInvalidationBus({
        publisher: client,
        subscriber,
        channel: parsed.bus.channel,
        ...(parsed.bus.secret === undefined ? {} : { signingSecret: parsed.bus.secret }),
      })
    }
    stack = new CacheStack([layer], {
      ...(tagIndex === undefined ? {} : { tagIndex }),
      ...(generation === undefined ? {} : { generation }),
      ...(bus === undefined ? {} : { invalidationBus: bus }),
    })
    const view = parsed.namespace === undefined ? stack : stack.namespace(parsed.namespace)
    const { target } = parsed
    io.err.write(
      `layercache invalidate: ${describeTarget(target)} ` +
        `under key prefix ${JSON.stringify(location.keyPrefix)}` +
        (parsed.namespace === undefined ? '' : `, namespace ${JSON.stringify(parsed.namespace)}`) +
        (generation === undefined ? '' : `, generation ${generation}`) +
        '\n',
    )
    const removed =
      target.kind === 'tags'
        ? await view.invalidateByTags(target.tags, target.mode)
        : target.kind === 'prefix'
          ? await view.invalidateByPrefix(target.prefix)
          : await view.invalidateByPattern(target.pattern)
    const announced =
      parsed.bus === undefined
        ? null
        : { channel: parsed.bus.channel, signed: parsed.bus.secret !== undefined }
    if (parsed.json) {
      return jsonText({ removed, kind: target.kind, bus: announced })
    }
    const how = keyIndex ? '' : ' (found by SCAN: no key index)'
    const told =
      announced === null
        ? '; not announced (--no-bus): running instances keep their memory copies until they expire'
        : `; announced on ${JSON.stringify(announced.channel)} (${announced.signed ? 'signed' : 'unsigned'})`
    return `layercache invalidate: removed ${removed} keys${how}${told}\n`
  } finally {
    await stack?.close()
    await bus?.close()
    subscriber?.disconnect()
  }
}

export const invalidateCommand = redisCommand({
  name: 'invalidate',
  summary: 'invalidate by tag, prefix or pattern in Redis and, over the bus, in every instance',
  usage: USAGE,
  parse,
  work: (parsed, client, io) => invalidate(parsed, client, io),
})
