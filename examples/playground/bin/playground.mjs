#!/usr/bin/env node
// `pnpm playground [file.ts] [args...]` from anywhere in the repository: runs a TypeScript (or JavaScript)
// file against the workspace's sources, with no build. The root package depends on this package, so pnpm
// links this file as the root's `playground` bin and runs it without a script banner.
//
// - `layercache`, `@layercache/*` resolve to the TypeScript sources (the @layercache/source condition);
// - tsx compiles the file and what it imports;
// - bare imports the file's own directory cannot resolve (`ioredis`, `layercache` from a file outside the
//   workspace packages, e.g. /tmp/try.ts or examples/try.ts) are resolved from examples/playground,
//   which depends on layercache, ioredis, tsx and @layercache/test-utils.
//
// Without a file it runs src/try.ts. The file's path is taken relative to the directory you ran pnpm in.
// A file outside the repository is CommonJS to tsx unless it is `.mts` (top-level await needs ESM).
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { constants } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const [given, ...rest] = process.argv.slice(2)
const file =
  given === undefined
    ? fileURLToPath(new URL('../src/try.ts', import.meta.url))
    : resolve(process.env.INIT_CWD ?? process.cwd(), given)
if (!existsSync(file)) {
  process.stderr.write(`playground: no file at ${file}\n`)
  process.exit(2)
}
const child = spawn(
  process.execPath,
  [
    '--conditions=@layercache/source',
    '--import',
    import.meta.resolve('tsx'),
    '--import',
    import.meta.resolve('./resolve-from-playground.mjs'),
    file,
    ...rest,
  ],
  { stdio: 'inherit' },
)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
child.on('exit', (code, signal) => {
  process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0)
})
