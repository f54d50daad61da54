import { inspect as show } from 'node:util'
import { inflateRawSync } from 'node:zlib'
import { assertKey, type CacheEntry, InvalidKeyError } from '@layercache/core'
import {
  COMPRESSED_MARKER,
  decodeStored,
  jsonSerializer,
  msgpackSerializer,
  type RedisClient,
  type Serializer,
} from '@layercache/layer-redis'
import { CACHE_OPTIONS, CACHE_USAGE, cacheLocationOf } from './cache-options'
import { jsonText, printable, UsageError } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { recordedGeneration, resolveGeneration } from './generation-option'
import { parseCommandLine, redisCommand } from './redis-command'

/** What inspect inflates at most: the Redis layer's default read cap. */
const INSPECT_MAX_BYTES = 16 * 1024 * 1024

const USAGE = `Usage: layercache inspect --redis <url> [--key-prefix <p>] [--generation <n|current>] <key>

Shows one entry as RedisLayer stored it: the decoded value, its tags, the remaining TTL (PTTL), when
it was created and until when it is fresh (when the stack recorded them), its size, its serializer and
whether it is compressed. <key> is the stack's key (without the key prefix); a key starting with '-'
goes after --. Reads only. Exit code 1 when there is no entry. Control characters in the value and the
tags are printed escaped (\\xHH; in JSON, \\u00XX), never raw.

Options:
${CACHE_USAGE}
  --json                     print the entry as JSON (a value JSON cannot hold is shown as JSON
                             turns it)
${CONNECTION_USAGE}
  -h, --help                 show this help

Examples:
  layercache inspect --redis redis://127.0.0.1:6379 --key-prefix myapp product:42
  layercache inspect --redis redis://127.0.0.1:6379 --key-prefix myapp --generation current \\
    --json -- -odd-key
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CACHE_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const READERS = new Map<string, Serializer>([
  [jsonSerializer.id, jsonSerializer],
  [msgpackSerializer.id, msgpackSerializer],
])

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const { values, positionals } = parseCommandLine(args, OPTIONS, 1)
  if (values.help) return { help: true as const }
  const connection = connectionOf(values, env)
  const [key] = positionals
  if (key === undefined) throw new UsageError('<key> is required')
  try {
    // A cache key, as the stack takes it: the layer's own '~' keys are no entries.
    assertKey(key)
  } catch (error) {
    if (!(error instanceof InvalidKeyError)) throw error
    throw new UsageError(`<key>: ${error.message}`)
  }
  return {
    help: false as const,
    ...connection,
    location: cacheLocationOf(values),
    key,
    json: values.json === true,
  }
}

export interface InspectedEntry {
  readonly key: string
  readonly redisKey: string
  readonly generation: number | null
  readonly value: unknown
  readonly tags: readonly string[]
  /** PTTL: remaining ms, or -1 without expiry. */
  readonly pttl: number
  /** Epoch ms (null: no expiry), as the writer's clock saw it. */
  readonly expiresAt: number | null
  readonly createdAt: number | null
  readonly freshUntil: number | null
  readonly loadMs: number | null
  /** A negative-cache entry: the loader found nothing. */
  readonly absent: boolean
  readonly bytes: number
  /** MEMORY USAGE (with Redis's overhead), when Redis answers it. */
  readonly memoryUsage: number | null
  readonly serializer: string
  readonly compressed: boolean
  readonly inflatedBytes: number | null
}

function serializerName(marker: number | undefined): string {
  if (marker === undefined) return 'empty'
  const id = String.fromCharCode(marker)
  if (id === jsonSerializer.id) return 'json'
  if (id === msgpackSerializer.id) return 'msgpack'
  return `custom (marker ${JSON.stringify(id)})`
}

async function inspectEntry(
  client: RedisClient,
  parsed: Extract<ReturnType<typeof parse>, { help: false }>,
): Promise<InspectedEntry> {
  const { keyPrefix, generation: choice } = parsed.location
  const generation = await resolveGeneration(client, keyPrefix, choice)
  const full = keyPrefix + (generation?.prefix ?? '') + parsed.key
  const [data, pttl, memoryUsage] = await Promise.all([
    client.getBuffer(full),
    client.pttl(full),
    client.memory('USAGE', full).catch(() => null),
  ])
  if (data === null) {
    const recorded = choice === undefined ? await recordedGeneration(client, keyPrefix) : undefined
    const hint =
      recorded === undefined
        ? ''
        : `; this prefix records generation ${recorded}: with CacheStack \`generation\`, ` +
          'pass --generation current'
    throw new Error(`no entry at ${JSON.stringify(full)}${hint}`)
  }
  const compressed = data.length > 0 && data[0] === COMPRESSED_MARKER.charCodeAt(0)
  let inner = data
  if (compressed) {
    try {
      // Capped as the layer's reads are (maxValueBytes' default): a small entry may inflate to gigabytes.
      inner = inflateRawSync(data.subarray(1), { maxOutputLength: INSPECT_MAX_BYTES })
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new Error(`${JSON.stringify(full)} inflates past 16 MiB: not shown`)
      }
      throw new Error(`${JSON.stringify(full)} is marked compressed but does not inflate: ${error}`)
    }
  }
  const serializer = serializerName(inner[0])
  if (!READERS.has(String.fromCharCode(inner[0] ?? 0))) {
    throw new Error(
      `${JSON.stringify(full)} (${data.length} bytes) was written with a ${serializer} serializer: ` +
        'only json and msgpack can be decoded here',
    )
  }
  // `inner` is already inflated: decoding it rather than `data` saves a second inflate.
  const entry: CacheEntry | undefined = await decodeStored(inner, READERS, full)
  if (entry === undefined) {
    throw new Error(`${JSON.stringify(full)} has an envelope of a newer format than this CLI reads`)
  }
  return {
    key: parsed.key,
    redisKey: full,
    generation: generation?.generation ?? null,
    value: entry.value,
    tags: entry.tags ?? [],
    pttl,
    expiresAt: entry.expiresAt === 0 ? null : entry.expiresAt,
    createdAt: entry.createdAt ?? null,
    freshUntil: entry.freshUntil ?? null,
    loadMs: entry.loadMs ?? null,
    absent: entry.absent === true,
    bytes: data.length,
    memoryUsage: typeof memoryUsage === 'number' ? memoryUsage : null,
    serializer,
    compressed,
    inflatedBytes: compressed ? inner.length : null,
  }
}

function when(ms: number, now: number): string {
  const delta = Math.round((ms - now) / 100) / 10
  const relative = delta >= 0 ? `in ${delta} s` : `${-delta} s ago`
  return `${new Date(ms).toISOString()} (${relative})`
}

function describe(entry: InspectedEntry): string {
  const now = Date.now()
  const lines = [
    `key: ${entry.key}`,
    `redis key: ${entry.redisKey}` + (entry.generation === null ? '' : ` (generation ${entry.generation})`),
    `value: ${
      entry.absent
        ? '(none: a negative-cache entry, the loader found nothing)'
        : show(entry.value, { depth: 6, breakLength: 100, maxStringLength: 4000 })
    }`,
    `tags: ${entry.tags.length === 0 ? '(none)' : entry.tags.map(printable).join(', ')}`,
    entry.pttl < 0
      ? 'ttl: none (no expiry)'
      : `ttl: ${entry.pttl} ms left (PTTL)` +
        (entry.expiresAt === null ? '' : `; expires ${when(entry.expiresAt, now)}`),
  ]
  if (entry.createdAt !== null) lines.push(`created: ${when(entry.createdAt, now)}`)
  if (entry.freshUntil !== null) {
    lines.push(
      `fresh until: ${when(entry.freshUntil, now)}` +
        (entry.freshUntil < now ? ': stale, served while it refreshes' : ''),
    )
  }
  if (entry.loadMs !== null) lines.push(`load time: ${entry.loadMs} ms`)
  lines.push(
    `size: ${entry.bytes} bytes stored` +
      (entry.memoryUsage === null ? '' : ` (MEMORY USAGE ${entry.memoryUsage} bytes)`),
  )
  lines.push(
    `encoding: ${entry.serializer}` +
      (entry.compressed ? `, zlib-compressed (${entry.inflatedBytes} bytes inflated)` : ', not compressed'),
  )
  return `${lines.join('\n')}\n`
}

export const inspectCommand = redisCommand({
  name: 'inspect',
  summary: "show one key's stored entry: value, tags, TTL, freshness, size, encoding",
  usage: USAGE,
  parse,
  work: async (parsed, client) => {
    const entry = await inspectEntry(client, parsed)
    return parsed.json ? jsonText(entry) : describe(entry)
  },
})
