import { clearCommand } from './clear-command'
import { type CliIo, EXIT_OK, EXIT_USAGE } from './cli-io'
import { migrateTagIndexCommand } from './migrate-tag-index-command'

export interface CliCommand {
  readonly name: string
  /** One line for `layercache --help`. */
  readonly summary: string
  readonly usage: string
  run(args: readonly string[], io: CliIo): Promise<number>
}

const COMMANDS: readonly CliCommand[] = [migrateTagIndexCommand, clearCommand]

function globalUsage(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length)) + 2
  return [
    'Usage: layercache <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}${command.summary}`),
    '',
    'Run `layercache <command> --help` for its options.',
    'Exit codes: 0 done, 1 failed (e.g. Redis unreachable), 2 bad arguments.',
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
