import { type MigrateTagIndexReport, migrateTagIndex } from '@layercache/layer-redis'
import { jsonText, UsageError } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { parseOptions, redisCommand, wholeNumber } from './redis-command'

const USAGE = `Usage: layercache migrate-tag-index --redis <url> --tag-index-prefix <prefix> [options]

Moves a RedisLayer key index into the sharded layout: the entries of the single set earlier versions
wrote (<prefix>~{<prefix>}k), and those of another recorded shard count (a re-shard). Safe while
instances run; resumable: after an interruption, run it again.

Options:
  --tag-index-prefix <p>     the RedisTagIndex prefix, or the RedisLayer prefix without one (required)
  --legacy-prefix <p>        the RedisLayer prefix whose single-set index to move in
                             (default: --tag-index-prefix)
  --known-key-shards <n>     shards to end with, 1 to 1024 (default: the recorded count, else 16)
  --batch-size <n>           entries per step (default 500)
  --settle-ms <ms>           a re-shard waits this long after each layout change for running
                             instances to see it (default 30000; 0 when none runs)
  --dry-run                  count what would move, per shard; change nothing
  --json                     print the report as JSON
${CONNECTION_USAGE}
  -h, --help                 show this help
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  'tag-index-prefix': { type: 'string' },
  'legacy-prefix': { type: 'string' },
  'known-key-shards': { type: 'string' },
  'batch-size': { type: 'string' },
  'settle-ms': { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const values = parseOptions(args, OPTIONS)
  if (values.help) return { help: true as const }
  const connection = connectionOf(values, env)
  if (values['tag-index-prefix'] === undefined)
    throw new UsageError('--tag-index-prefix <prefix> is required')
  return {
    help: false as const,
    ...connection,
    json: values.json === true,
    migration: {
      prefix: values['tag-index-prefix'],
      legacyPrefix: values['legacy-prefix'],
      knownKeysShards: wholeNumber(values['known-key-shards'], 'known-key-shards', 1),
      batchSize: wholeNumber(values['batch-size'], 'batch-size', 1),
      settleMs: wholeNumber(values['settle-ms'], 'settle-ms', 0),
      dryRun: values['dry-run'] === true,
    },
  }
}

function describe(report: MigrateTagIndexReport): string {
  const verb = report.dryRun ? 'would move' : 'moved'
  const recorded = report.layoutBefore.length === 0 ? 'none' : report.layoutBefore.join(',')
  const lines = [
    `layercache migrate-tag-index${report.dryRun ? ' (dry run: nothing changed)' : ''}`,
    `index prefix: ${JSON.stringify(report.prefix)}, legacy prefix: ${JSON.stringify(report.legacyPrefix)}`,
    `layout: recorded ${recorded}, ${report.dryRun ? 'would end with' : 'now'} ${report.layoutAfter.join(',')} shards`,
  ]
  if (report.sources.length === 0) {
    lines.push('nothing to move')
  } else {
    lines.push('sources:')
    for (const source of report.sources)
      lines.push(`  ${source.key} (${source.kind}): ${source.entries} entries`)
    lines.push(`${verb} ${report.moved} entries:`)
    report.perShard.forEach((count, shard) => {
      if (count > 0) lines.push(`  shard ${shard}: ${count}`)
    })
  }
  if (report.left > 0) {
    lines.push(
      `${report.left} entries were re-written while they moved and stay where they are: run it again`,
    )
  }
  return `${lines.join('\n')}\n`
}

export const migrateTagIndexCommand = redisCommand({
  name: 'migrate-tag-index',
  summary: 'move a key index into the sharded layout (from the single set, or another shard count)',
  usage: USAGE,
  parse,
  work: async (parsed, client, io) => {
    const report = await migrateTagIndex({
      client,
      ...parsed.migration,
      onProgress: ({ source, moved, remaining }) => {
        io.err.write(
          parsed.migration.dryRun
            ? `${source}: ${moved} to move so far, of ${remaining} entries\n`
            : `${source}: moved ${moved}, ${remaining} left\n`,
        )
      },
    })
    return parsed.json ? jsonText(report) : describe(report)
  },
})
