#!/usr/bin/env node
// `pnpm demo` from the repository root. The root package depends on this package, so pnpm links this file
// as the root's `demo` bin, and `pnpm demo` (with no root script of that name) runs it the way `pnpm exec`
// does: without the two banner lines pnpm prints before a script. It runs src/main.ts from the TypeScript
// sources (the @layercache/source condition, tsx), as `pnpm --filter @layercache/example-demo start` does.
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url))
const tsx = import.meta.resolve('tsx')
const child = spawn(
  process.execPath,
  ['--conditions=@layercache/source', '--import', tsx, main, ...process.argv.slice(2)],
  { stdio: 'inherit' },
)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
child.on('exit', (code, signal) => {
  process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0)
})
