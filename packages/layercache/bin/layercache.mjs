#!/usr/bin/env node
// The `layercache` command. A launcher that exists before any build, so that `pnpm install` in a fresh
// checkout can link the bin; the CLI itself is dist/cli.js, which `pnpm build` writes.
import { existsSync } from 'node:fs'

const cli = new URL('../dist/cli.js', import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write(
    'layercache: dist/cli.js is missing: run `pnpm build` (from a checkout, `pnpm layercache` runs the sources)\n',
  )
  process.exit(1)
}
await import(cli.href)
