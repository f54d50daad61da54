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

/**
 * C0 controls, DEL and C1 controls: what a terminal may act on (ESC starts a sequence that can move the
 * cursor, rewrite the title or the clipboard; 0x9B is CSI on its own). Keys, values and tags read from
 * Redis may hold any of them: whoever can write to Redis could otherwise drive the operator's terminal.
 */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f)
}

const LINE_FEED = 0x0a

/** `\xHH`, as util.inspect writes control characters in strings. */
const asHex = (code: number) => `\\x${code.toString(16).toUpperCase().padStart(2, '0')}`
/** `\u00HH`: the same character once the JSON is parsed. */
const asUnicode = (code: number) => `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`

/** `text` with its control characters (line feeds too unless `keepLineFeeds`) replaced by `spell`. */
function escapeControls(text: string, keepLineFeeds: boolean, spell: (code: number) => string): string {
  let out = ''
  let from = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (!isControl(code) || (keepLineFeeds && code === LINE_FEED)) continue
    out += text.slice(from, i) + spell(code)
    from = i + 1
  }
  return from === 0 ? text : out + text.slice(from)
}

/**
 * One value read from Redis, for a line of text: every control character, line feed included (a key
 * holding one must not print as two keys), written as `\xHH`.
 */
export function printable(text: string): string {
  return escapeControls(text, false, asHex)
}

/**
 * A command's whole output, as it reaches the terminal: its own line feeds kept, any other control
 * character escaped (fields are escaped with `printable` before; this is the net under them).
 */
export function printableOutput(text: string): string {
  return escapeControls(text, true, asHex)
}

/**
 * What `--json` prints: the value, indented two spaces, and a newline. JSON.stringify escapes C0 controls
 * in strings but leaves DEL and C1 raw: those become `\u00HH` escapes, the same value once parsed.
 */
export function jsonText(value: unknown): string {
  return `${escapeControls(JSON.stringify(value, null, 2), true, asUnicode)}\n`
}

/** `io` with both streams passed through printableOutput: every command's output, screened in one place. */
export function screened(io: CliIo): CliIo {
  return {
    out: { write: (text) => io.out.write(printableOutput(text)) },
    err: { write: (text) => io.err.write(printableOutput(text)) },
  }
}

/** One `layercache` subcommand. */
export interface CliCommand {
  readonly name: string
  /** One line for `layercache --help`. */
  readonly summary: string
  readonly usage: string
  run(args: readonly string[], io: CliIo): Promise<number>
}
