import { fileURLToPath } from 'node:url'
import { type ProcessRun, runProcess } from '@layercache/test-utils'
import { runCli } from '../../src/cli/run-cli'

const ROOT = fileURLToPath(new URL('../../../..', import.meta.url))
const CLI = 'packages/layercache/src/cli.ts'

export type CliRun = ProcessRun

/**
 * Runs the CLI from source in a process of its own (`node --conditions=@layercache/source --import tsx
 * …/cli.ts …`), with `env` added to the environment (NODE_ENV, LAYERCACHE_BUS_SECRET…).
 */
export function runCliProcess(env: Record<string, string | undefined>, ...args: string[]): Promise<CliRun> {
  return runProcess(process.execPath, ['--conditions=@layercache/source', '--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    env,
  })
}

/**
 * Runs the CLI in this process (`runCli` with its output captured), as the bin would, a second faster
 * than a process of its own (node, tsx and the sources loaded again every time). What a process adds —
 * the bin's exit code, environment variables read at start, nothing left running — is covered by the
 * tests that use runCliProcess.
 */
export async function runCliInProcess(...args: string[]): Promise<CliRun> {
  let stdout = ''
  let stderr = ''
  const io = {
    out: { write: (text: string) => (stdout += text) },
    err: { write: (text: string) => (stderr += text) },
  }
  try {
    return { code: await runCli(args, io), stdout, stderr }
  } catch (error) {
    // What src/cli.ts does with an error no command handled.
    stderr += `layercache: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`
    return { code: 1, stdout, stderr }
  }
}
