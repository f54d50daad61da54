import { type ParseArgsConfig, parseArgs } from 'node:util'
import {
  InvalidKeyError,
  InvalidOperationError,
  InvalidOptionError,
  InvalidPatternError,
} from '@layercache/core'
import { type CliCommand, type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE, screened, UsageError } from './cli-io'
import { type ConnectOptions, connectRedis } from './redis-connection'

type Options = NonNullable<ParseArgsConfig['options']>
type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O; args: string[]; allowPositionals: false; strict: true }>
>['values']

/** Parses `args` strictly (no positionals); a bad command line is a UsageError. */
export function parseOptions<O extends Options>(args: readonly string[], options: O): Values<O> {
  return parseCommandLine(args, options, 0).values
}

/**
 * Parses `args` strictly, with at most `maxPositionals` arguments besides the options (after `--`, an
 * argument starting with '-' is one too); a bad command line is a UsageError.
 */
export function parseCommandLine<O extends Options>(
  args: readonly string[],
  options: O,
  maxPositionals: number,
): { readonly values: Values<O>; readonly positionals: string[] } {
  let parsed: { values: Values<O>; positionals: string[] }
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true }) as never
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals[maxPositionals]!
    throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`)
  }
  return parsed
}

export function wholeNumber(text: string | undefined, option: string, min: number): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < min) {
    throw new UsageError(
      `--${option}: expected a whole number of at least ${min}, got ${JSON.stringify(text)}`,
    )
  }
  return value
}

/** What a Redis command's parse returns: help, or where to connect plus the command's own part. */
type Parsed = { readonly help: true } | (ConnectOptions & { readonly help: false })

/**
 * The frame every command that talks to Redis shares: parse (usage and exit 2 on a bad command line),
 * `--help`, connect, run `work` (its text goes to stdout), exit 2 for bad input found later, 1 for
 * failures, and always disconnect. Everything it and `work` write is screened for control characters:
 * text read from Redis never reaches the terminal raw.
 */
async function runRedisCommand<P extends Parsed>(
  name: string,
  usage: string,
  io: CliIo,
  parse: () => P,
  work: (
    parsed: Extract<P, { readonly help: false }>,
    client: Awaited<ReturnType<typeof connectRedis>>,
  ) => Promise<string>,
): Promise<number> {
  const prefix = `layercache ${name}: `
  let parsed: P
  try {
    parsed = parse()
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    io.err.write(`${prefix}${error.message}\n\n${usage}`)
    return EXIT_USAGE
  }
  if (parsed.help) {
    io.out.write(usage)
    return EXIT_OK
  }
  const ready = parsed as Extract<P, { readonly help: false }>
  let client: Awaited<ReturnType<typeof connectRedis>> | undefined
  try {
    client = await connectRedis(ready)
    io.out.write(await work(ready, client))
    return EXIT_OK
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    if (
      error instanceof UsageError ||
      error instanceof InvalidOperationError ||
      error instanceof InvalidOptionError ||
      error instanceof InvalidKeyError ||
      error instanceof InvalidPatternError
    ) {
      io.err.write(`${prefix}${message}\n\n${usage}`)
      return EXIT_USAGE
    }
    io.err.write(`${prefix}${message}\n`)
    return EXIT_FAILED
  } finally {
    client?.disconnect()
  }
}

/**
 * `layercache <name>` for a command that talks to Redis: its command line parsed with `parse` (from the
 * arguments and the environment), then `work` run in the runRedisCommand frame.
 */
export function redisCommand<P extends Parsed>(command: {
  readonly name: string
  readonly summary: string
  readonly usage: string
  readonly parse: (args: readonly string[], env: NodeJS.ProcessEnv) => P
  readonly work: (
    parsed: Extract<P, { readonly help: false }>,
    client: Awaited<ReturnType<typeof connectRedis>>,
    io: CliIo,
  ) => Promise<string>
}): CliCommand {
  const { name, summary, usage, parse, work } = command
  return {
    name,
    summary,
    usage,
    run: (args, io) => {
      const safe = screened(io)
      return runRedisCommand(
        name,
        usage,
        safe,
        () => parse(args, process.env),
        (parsed, client) => work(parsed, client, safe),
      )
    },
  }
}
