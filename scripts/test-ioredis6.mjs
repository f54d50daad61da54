#!/usr/bin/env node
// The Redis-facing tests on ioredis 6, beside the suite's ioredis 5 (pnpm test:ioredis6, a step of .ci/run).
//
//   node scripts/test-ioredis6.mjs [--version 6] [vitest options] [test files: instead of the default set]
//
// 1. npm-installs ioredis (`--version`, default the latest 6.x) into node_modules/.cache/layercache/ioredis-6,
//    once (kept for later runs of the same version; npm answers from its cache);
// 2. runs the layer-redis and distributed projects and packages/layercache/test/client-replies.test.ts
//    with LAYERCACHE_TEST_IOREDIS pointing at it: vitest.config.ts then aliases every `ioredis` import of
//    the sources and tests (packages, test-utils) to that copy. Types stay ioredis 5's: this checks how
//    the code runs against 6 (RESP3 by default, its reconnection and reply handling), not how it compiles
//    (pnpm test:consumer type-checks the published .d.ts against 6).
// Why only these: they are where the code talks to ioredis directly (commands, scripts, pipelines,
// Cluster, pub/sub, reconnects); the other projects use them through the same calls. They take about
// two minutes here, which CI's budget allows; the whole suite would take ten more.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const at = args.indexOf('--version')
const wanted = at === -1 ? '6' : args[at + 1]
const vitestArgs = at === -1 ? args : [...args.slice(0, at), ...args.slice(at + 2)]
const started = Date.now()

const dir = join(root, 'node_modules', '.cache', 'layercache', `ioredis-${wanted}`)
const manifest = join(dir, 'node_modules', 'ioredis', 'package.json')
if (!existsSync(manifest)) {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'ioredis-under-test', private: true }))
  console.log(`==> npm install ioredis@${wanted} into ${dir}`)
  execFileSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--loglevel=error', '--no-package-lock', `ioredis@${wanted}`],
    { cwd: dir, stdio: 'inherit' },
  )
}
const version = JSON.parse(readFileSync(manifest, 'utf8')).version
if (!version.startsWith(`${wanted.split('.')[0]}.`)) {
  console.error(`asked for ioredis ${wanted}, ${dir} holds ${version}: remove it and run again`)
  process.exit(1)
}
const entry = createRequire(join(dir, 'package.json')).resolve('ioredis')
console.log(`==> vitest on ioredis ${version} (${entry})`)

// File filters given on the command line replace the default set (options are passed on as they are).
const filters = vitestArgs.some((arg) => !arg.startsWith('-'))
  ? []
  : ['packages/layer-redis/', 'packages/distributed/', 'packages/layercache/test/client-replies.test.ts']
const run = spawnSync(join(root, 'node_modules', '.bin', 'vitest'), ['run', ...filters, ...vitestArgs], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, LAYERCACHE_TEST_IOREDIS: entry },
})
console.log(
  `\nioredis ${version}: ${run.status === 0 ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
)
process.exitCode = run.status ?? 1
