import { clearCommand } from './clear-command'
import { type CliCommand, type CliIo, EXIT_OK, EXIT_USAGE } from './cli-io'
import { inspectCommand } from './inspect-command'
import { invalidateCommand } from './invalidate-command'
import { keysCommand } from './keys-command'
import { migrateTagIndexCommand } from './migrate-tag-index-command'
import { statsCommand } from './stats-command'

const COMMANDS: readonly CliCommand[] = [
  statsCommand,
  keysCommand,
  inspectCommand,
  invalidateCommand,
  clearCommand,
  migrateTagIndexCommand,
]

function globalUsage(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length)) + 2
  return [
    'Usage: layercache <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}${command.summary}`),
    '',
    'Run `layercache <command> --help` for its options and examples. Every command takes --redis <url>;',
    'in production mode (--production or NODE_ENV=production) a plaintext redis:// URL is refused unless',
    '--tls or --allow-plaintext is given.',
    'Exit codes: 0 done, 1 failed (e.g. Redis unreachable, no such key), 2 bad arguments or refused.',
    '',
  ].join('\n')
}

/** Runs one command line (without `node` and the script); returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [verb, ...rest] = argv
  if (verb === undefined) {
    io.err.write(globalUsage())
    return EXIT_USAGE
  }
  if (verb === '--help' || verb === '-h' || verb === 'help') {
    io.out.write(globalUsage())
    return EXIT_OK
  }
  const command = COMMANDS.find((candidate) => candidate.name === verb)
  if (command === undefined) {
    io.err.write(`layercache: unknown command ${JSON.stringify(verb)}\n\n${globalUsage()}`)
    return EXIT_USAGE
  }
  return command.run(rest, io)
}
