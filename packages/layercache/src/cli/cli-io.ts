/** Where a command writes: its result to `out`, progress and errors to `err`. */
export interface CliIo {
  readonly out: { write(text: string): unknown }
  readonly err: { write(text: string): unknown }
}

/** Exit codes of every command. */
export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2

/** A command line the command cannot run: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}

/** What `--json` prints: the value, indented two spaces, and a newline. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}
