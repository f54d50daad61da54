import { Redis } from 'ioredis'
import { CacheStack, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternateAmong, median, pairedRatio } from '../measure'
import { formatCount, type Row, type ScenarioResult } from '../report'
import { countExisting } from '../traffic'

/** A logical database of its own, emptied (FLUSHDB) before every fill: only on a server this run started. */
const DB = 3
/** Key prefix of every side (each fill starts from an empty database, so they can share it). */
const PREFIX = 'bench:'
/** Writes in flight while filling. */
const CONCURRENCY = 100
/**
 * Command timeout of the filling layer: this scenario measures memory, not latency, so a write slowed down
 * by a loaded machine must not fail the fill (the layer's default is 1 s).
 */
const FILL_COMMAND_TIMEOUT_MS = 60_000
/** Tags of the tagged side: entry i gets `cat:<i mod TAG_COUNT>`, like a category. */
const TAG_COUNT = 100
const ROUNDS = 3

type Side = 'raw' | 'indexed' | 'tagged' | 'noIndex'
const SIDES: readonly Side[] = ['raw', 'indexed', 'tagged', 'noIndex']
type Ours = Exclude<Side, 'raw'>
const OURS: readonly Ours[] = ['indexed', 'tagged', 'noIndex']

const LABEL: Record<Ours, string> = {
  indexed: 'default (key index: prefix/pattern support on)',
  tagged: `default + 1 tag per entry (${TAG_COUNT} tags)`,
  noIndex: 'keyIndex: false',
}

/** A small entry: a ~60-byte JSON object, distinct per key. */
function smallValue(i: number) {
  return { id: i, name: `Product ${i}`, price: 9.99, inStock: true }
}

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info('memory')
  const used = /^used_memory:(\d+)/m.exec(info)?.[1]
  if (used === undefined) throw new Error('INFO memory has no used_memory')
  return Number(used)
}

async function quit(client: Redis): Promise<void> {
  try {
    await client.quit()
  } catch {
    client.disconnect()
  }
}

/**
 * Redis memory per entry: N small entries written into an empty database, `used_memory` after − before,
 * per entry; raw `SET key json PX ttl` against `cache.set` on CacheStack([RedisLayer]) with the default key
 * index, with one tag per entry, and with `keyIndex: false`. Needs a Redis this run started (it empties a
 * database of its own before every fill); with REDIS_URL it is skipped.
 */
export async function redisMemory(ctx: BenchContext): Promise<ScenarioResult> {
  const scenario = 'Redis memory per entry'
  if (!ctx.redisSpawned) {
    const why =
      'skipped: REDIS_URL is set, and this scenario empties a database (FLUSHDB) and reads the ' +
      'server-wide used_memory, so it only runs on the throwaway redis-server a run starts itself'
    return {
      rows: [{ scenario, metric: why, ours: '—', baseline: '—', ratio: Number.NaN }],
      method: [`Redis memory per entry: ${why}.`],
    }
  }

  const entries = Math.max(20_000, scaled(ctx, 100_000))
  const control = new Redis(ctx.url, { db: DB, lazyConnect: true, maxRetriesPerRequest: 1 })
  await control.connect()
  const perEntry = {} as Record<Side, number[]>
  const dbKeys = {} as Record<Side, number[]>
  for (const side of SIDES) {
    perEntry[side] = []
    dbKeys[side] = []
  }
  const keyOf = (i: number) => `item:${i}`

  const fill = async (side: Side): Promise<void> => {
    await control.flushdb('SYNC')
    if ((await control.dbsize()) !== 0)
      throw new Error(`redis memory: database ${DB} not empty after FLUSHDB`)
    const before = await usedMemory(control)
    // The writer's connection exists only while it writes, so its buffers are in neither reading.
    const writer = new Redis(ctx.url, { db: DB, lazyConnect: true, maxRetriesPerRequest: 1 })
    await writer.connect()
    let cache: CacheStack | undefined
    try {
      let write: (i: number) => Promise<unknown>
      if (side === 'raw') {
        write = (i) => writer.set(PREFIX + keyOf(i), JSON.stringify(smallValue(i)), 'PX', REDIS_TTL_MS)
      } else {
        const layer = new RedisLayer({
          client: writer,
          ttl: REDIS_TTL_MS,
          prefix: PREFIX,
          commandTimeout: FILL_COMMAND_TIMEOUT_MS,
          ...(side === 'noIndex' ? { keyIndex: false } : {}),
        })
        const stack = new CacheStack([layer])
        cache = stack
        write =
          side === 'tagged'
            ? (i) => stack.set(keyOf(i), smallValue(i), { tags: [`cat:${i % TAG_COUNT}`] })
            : (i) => stack.set(keyOf(i), smallValue(i))
      }
      for (let i = 0; i < entries; i += CONCURRENCY) {
        const batch: Promise<unknown>[] = []
        for (let j = i; j < Math.min(entries, i + CONCURRENCY); j++) batch.push(write(j))
        await Promise.all(batch)
      }
    } finally {
      cache?.close()
      await quit(writer)
    }
    // Let the server drop the closed connection before reading.
    await new Promise((resolve) => setTimeout(resolve, 100))
    const after = await usedMemory(control)
    perEntry[side].push((after - before) / entries)
    dbKeys[side].push(await control.dbsize())

    // Every entry is there; for the tagged side, a tag invalidation finds all of its members.
    const present = await countExisting(
      control,
      Array.from({ length: entries }, (_, i) => PREFIX + keyOf(i)),
    )
    if (present !== entries) throw new Error(`redis memory: ${side} left ${present} of ${entries} entries`)
    if (side === 'tagged') {
      const checker = new Redis(ctx.url, { db: DB, lazyConnect: true, maxRetriesPerRequest: 1 })
      await checker.connect()
      try {
        const stack = new CacheStack([
          new RedisLayer({
            client: checker,
            ttl: REDIS_TTL_MS,
            prefix: PREFIX,
            commandTimeout: FILL_COMMAND_TIMEOUT_MS,
          }),
        ])
        const removed = await stack.invalidateByTag('cat:0')
        const expected = Math.ceil(entries / TAG_COUNT)
        if (removed !== expected) {
          throw new Error(`redis memory: invalidateByTag('cat:0') removed ${removed}, expected ${expected}`)
        }
      } finally {
        await quit(checker)
      }
    }
  }

  try {
    await alternateAmong(SIDES, ROUNDS, (side) => fill(side))
  } finally {
    await control.flushdb('SYNC')
    await quit(control)
  }

  const rows: Row[] = []
  for (const side of OURS) {
    const paired = pairedRatio(perEntry[side], perEntry.raw)
    rows.push({
      scenario: `${scenario}: ${LABEL[side]}`,
      metric:
        `used_memory delta / ${formatCount(entries)} entries vs raw SET PX of the same JSON, median of ` +
        `${ROUNDS} rounds (keys in the database: ours ${formatCount(median(dbKeys[side]))}, raw ` +
        `${formatCount(median(dbKeys.raw))})`,
      ours: `${median(perEntry[side]).toFixed(0)} B`,
      baseline: `${median(perEntry.raw).toFixed(0)} B`,
      ratio: paired.median,
      roundRange: paired.range,
      budget: side === 'indexed' ? { text: '≤ 1.3× bytes', maxRatio: 1.3 } : undefined,
    })
  }
  const sample = JSON.stringify(smallValue(entries - 1))
  return {
    rows,
    method: [
      `Redis memory per entry: ${formatCount(entries)} small entries (a JSON object of about ` +
        `${Buffer.byteLength(sample)} bytes, distinct per key: ${sample}) under keys \`${PREFIX}item:<i>\`, ` +
        `written ${CONCURRENCY} at a time (layer commandTimeout ${FILL_COMMAND_TIMEOUT_MS / 1000} s: a ` +
        'slow write on a loaded machine must not fail a memory measurement) into logical database ' +
        `${DB} of the throwaway redis-server, emptied ` +
        '(FLUSHDB SYNC) before every fill; per entry = (used_memory after − before) / entries, the writing ' +
        'connection opened after the first reading and closed before the second. Raw: `SET key json PX ' +
        `${REDIS_TTL_MS}\`; ours: \`cache.set(key, value)\` on CacheStack([RedisLayer({ client, ttl: ` +
        `${REDIS_TTL_MS}, prefix: '${PREFIX}' })]) with the default key index (the budget row), with ` +
        `\`{ tags: ['cat:<i mod ${TAG_COUNT}>'] }\` and with \`keyIndex: false\` (info); everything the layer ` +
        'keeps in Redis (envelope, index, tag memberships) counts.',
      `Redis memory per entry: ${ROUNDS} rounds, the four sides in A B C D / D C B A order; ratio = median of ` +
        'per-round ratios. Checked after every fill: all entries are in Redis (EXISTS); for the tagged side, ' +
        `invalidateByTag('cat:0') from a new stack removes its ${formatCount(Math.ceil(entries / TAG_COUNT))} ` +
        'members (after the reading).',
    ],
  }
}
