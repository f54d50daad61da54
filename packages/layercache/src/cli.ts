#!/usr/bin/env node
import { runCli } from './cli/run-cli'

runCli(process.argv.slice(2), { out: process.stdout, err: process.stderr }).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`layercache: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    process.exitCode = 1
  },
)
