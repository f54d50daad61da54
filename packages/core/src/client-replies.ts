import { UnsupportedClientError } from './errors'

/** The options of an ioredis client (5 or 6) that change the shapes of its replies. */
interface ReplyOptions {
  readonly protocol?: unknown
  readonly replyMapping?: unknown
  readonly stringNumbers?: unknown
}

/**
 * Refuses a Redis client whose replies layercache would misread, where the client is handed over (a
 * layer, the bus, the coordinator, a tag index, an entity cache, a write-behind queue, the admin calls),
 * instead of failing later in ways that look like cache bugs. Every part reads RESP2-shaped replies:
 * integers as numbers, maps as flat arrays, doubles as strings.
 *
 * - ioredis 6's `replyMapping: 'resp3'` (with protocol 3, its default) turns map replies into objects and
 *   doubles into numbers. Its default, `'legacy'`, keeps the RESP2 shapes over RESP3 and is fine.
 * - `stringNumbers: true` (ioredis 5 and 6) returns integers as strings: `EXISTS` would never be `1`.
 *
 * Read from `client.options` (a Cluster: `client.options.redisOptions`, what its node connections use)
 * without importing ioredis, so that every package, write-strategies included, checks it this one way.
 * A value that is not an ioredis client passes: each caller checks the client's methods itself.
 */
export function checkClientReplies(client: unknown, owner: string, name = 'client'): void {
  const options = (client as { options?: unknown } | null | undefined)?.options
  if (options === null || typeof options !== 'object') return
  const isCluster = (client as { isCluster?: unknown }).isCluster === true
  const checked = (isCluster ? (options as { redisOptions?: ReplyOptions }).redisOptions : options) as
    | ReplyOptions
    | undefined
  if (checked === undefined || checked === null) return
  const where = isCluster ? 'redisOptions.' : ''
  if (checked.replyMapping === 'resp3' && checked.protocol !== 2) {
    throw new UnsupportedClientError(
      `${owner}: the ${name} is configured with ${where}replyMapping: "resp3", which changes the shapes ` +
        "of Redis replies that layercache reads (maps become objects, doubles numbers). Use ioredis's " +
        `default replyMapping "legacy" (RESP3 on the wire is fine) or protocol: 2; if the rest of your app ` +
        'needs "resp3", give layercache a client of its own.',
      `${where}replyMapping`,
    )
  }
  if (checked.stringNumbers === true) {
    throw new UnsupportedClientError(
      `${owner}: the ${name} is configured with ${where}stringNumbers: true, which returns Redis integers ` +
        'as strings where layercache reads numbers. Create the client layercache uses without ' +
        'stringNumbers (a client of its own if the rest of your app needs it).',
      `${where}stringNumbers`,
    )
  }
}
