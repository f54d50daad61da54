#!/usr/bin/env node
// The consumer test: installs the packages the way a user does, outside the workspace, and checks that
// they work there. What the workspace's own tests cannot see: what is in the tarballs, what their
// package.json says once pnpm rewrote it, and how the builds resolve from another project.
//
//   node scripts/consumer-test.mjs [--ioredis 5,6] [--node 22,24] [--keep] [--no-build]
//
// 1. builds (turbo: cached after `pnpm build`) and `pnpm pack`s every publishable package;
// 2. checks each tarball: LICENSE (the root one), README with an example, manifest fields, no
//    `workspace:` range, no private package, no `@layercache/source` condition, ioredis only as a peer;
//    then publint (--strict) and @arethetypeswrong/cli on it;
// 3. for each ioredis major: `npm install`s the tarballs with that ioredis into a scratch project under
//    the system temp dir, checks npm installed exactly one ioredis, then
//    - type-checks every README example, the root README's quick start and a CommonJS-mode file with
//      `moduleResolution` node16, nodenext and bundler (skipLibCheck off: our .d.ts against that ioredis);
//    - runs an ESM and a CommonJS script: same exports from both builds, a stampede loaded once, a tag
//      invalidation, a signed bus carrying a delete to another stack's memory, all on a Redis it starts;
//    - runs every README example and the quick start (compiled by tsc) against that Redis;
//    - with the first ioredis major: the NestJS package's README example on the older NestJS major too;
//    - runs the `layercache` bin (--help, and stats against that Redis);
//    the runtime checks run with this Node, and with each `--node` major too (npm's `node` package).
// Fails loudly: the first failing step stops the run with its output and a non-zero exit code.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(name)
  return at === -1 ? fallback : args[at + 1]
}
const majors = option('--ioredis', '5,6').split(',')
const nodeMajors = option('--node', '')
  .split(',')
  .filter((major) => major !== '')
const nodes = []
const keep = args.includes('--keep')
const build = !args.includes('--no-build')
const PEER_RANGE = '^5.9.0 || ^6.0.0'
// What the integration packages' README examples use besides their peers (npm installs those): cache-manager
// for @layercache/keyv's, NestJS for @layercache/nestjs's (its newest major; the older one it supports is
// checked after, see nestMajor).
const NEST_MAJORS = ['12', '11']
const INTEGRATION_PEERS = [
  'cache-manager@7',
  'keyv@5',
  `@nestjs/common@${NEST_MAJORS[0]}`,
  `@nestjs/core@${NEST_MAJORS[0]}`,
  'reflect-metadata@0.2',
  'rxjs@7',
]
const started = Date.now()

const work = mkdtempSync(join(tmpdir(), 'layercache-consumer-'))
const servers = []
let failed = false

function step(title) {
  console.log(`\n==> ${title}  (+${((Date.now() - started) / 1000).toFixed(1)} s)`)
}

function fail(message) {
  const error = new Error(message)
  error.reported = true
  throw error
}

/** Runs a command; on failure prints its output and stops the run. Returns stdout. */
function run(command, commandArgs, { cwd = work, env = {}, quiet = false } = {}) {
  try {
    const out = execFileSync(command, commandArgs, {
      cwd,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    })
    if (!quiet && out.trim() !== '') console.log(indent(out))
    return out
  } catch (error) {
    console.error(indent(`${error.stdout ?? ''}${error.stderr ?? ''}`))
    fail(`\`${[command, ...commandArgs].join(' ')}\` failed in ${cwd} (exit ${error.status ?? error.signal})`)
  }
}

const indent = (text) =>
  text
    .trimEnd()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n')

// --- packages ------------------------------------------------------------------------------------------

const packages = readdirSync(join(root, 'packages'))
  .map((dir) => ({
    dir,
    manifest: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')),
  }))
  .filter(({ manifest }) => manifest.private !== true)
  .map(({ dir, manifest }) => ({
    dir,
    name: manifest.name,
    version: manifest.version,
    peerDependencies: manifest.peerDependencies ?? {},
    tarball: join(
      work,
      'tarballs',
      `${manifest.name.replace(/^@/, '').replace('/', '-')}-${manifest.version}.tgz`,
    ),
  }))

function checkTarball(pkg, unpacked) {
  const problems = []
  const file = (path) => join(unpacked, path)
  const manifest = JSON.parse(readFileSync(file('package.json'), 'utf8'))
  const text = JSON.stringify(manifest)

  if (!existsSync(file('LICENSE'))) problems.push('no LICENSE')
  else if (readFileSync(file('LICENSE'), 'utf8') !== readFileSync(join(root, 'LICENSE'), 'utf8')) {
    problems.push('LICENSE differs from the repository root LICENSE')
  }
  if (!existsSync(file('README.md'))) problems.push('no README.md')
  else if (readmeExample(readFileSync(file('README.md'), 'utf8')) === undefined) {
    problems.push('README.md has no ```ts block under "## Example"')
  }
  if (text.includes('workspace:')) problems.push('a `workspace:` range survived packing')
  if (text.includes('@layercache/source'))
    problems.push('the @layercache/source condition (src/ is not shipped)')
  if (text.includes('@layercache/test-utils')) problems.push('names the private @layercache/test-utils')
  for (const field of ['description', 'license', 'homepage', 'keywords', 'files', 'engines']) {
    if (manifest[field] === undefined) problems.push(`no "${field}"`)
  }
  if (manifest.license !== 'MIT') problems.push(`license is ${manifest.license}, not MIT`)
  if (manifest.repository?.directory !== `packages/${pkg.dir}`) problems.push('repository.directory is wrong')
  if (!/^git\+https:\/\//.test(manifest.repository?.url ?? ''))
    problems.push('repository.url is not git+https')
  if (manifest.engines?.node === undefined) problems.push('no engines.node')

  const declarations = readdirSync(file('dist')).filter((name) => /\.d\.c?ts$/.test(name))
  const importsIoredis = declarations.some((name) =>
    /from ['"]ioredis['"]/.test(readFileSync(file(`dist/${name}`), 'utf8')),
  )
  const runtimeIoredis = readdirSync(file('dist'))
    .filter((name) => /\.c?js$/.test(name))
    .some((name) => /(from|require\()\s*['"]ioredis['"]/.test(readFileSync(file(`dist/${name}`), 'utf8')))
  if (manifest.dependencies?.ioredis !== undefined)
    problems.push('ioredis is a dependency (it must be a peer)')
  if ((importsIoredis || runtimeIoredis) && manifest.peerDependencies?.ioredis !== PEER_RANGE) {
    problems.push(
      `uses ioredis but its peer range is ${manifest.peerDependencies?.ioredis}, not "${PEER_RANGE}"`,
    )
  }
  for (const [name, range] of Object.entries(manifest.dependencies ?? {})) {
    const sibling = packages.find((other) => other.name === name)
    if (name.startsWith('@layercache/') && sibling === undefined)
      problems.push(`depends on unpublished ${name}`)
    if (sibling !== undefined && range !== sibling.version)
      problems.push(`${name}@${range}, not ${sibling.version}`)
  }
  if (problems.length > 0) fail(`${pkg.name}: ${problems.join('; ')}`)
  return { importsIoredis }
}

// Peer dependencies besides ioredis (the exporters' @opentelemetry/api, prom-client): installed as a user
// of those packages would, at the newest version their range allows.
const otherPeers = [
  ...new Set(
    packages.flatMap((pkg) =>
      Object.entries(pkg.peerDependencies)
        .filter(([name]) => name !== 'ioredis' && !name.startsWith('@layercache/'))
        .map(([name, range]) => `${name}@${range}`),
    ),
  ),
]
// Peers that ship no types: a TypeScript user of them installs these too (the README examples need them).
const PEER_TYPES = { express: '@types/express@5' }
for (const peer of [...otherPeers]) {
  const types = PEER_TYPES[peer.slice(0, peer.indexOf('@', 1))]
  if (types !== undefined) otherPeers.push(types)
}

/** The first ```ts block after a "## Example" (package READMEs) or "## Quick start" (root) heading. */
function readmeExample(markdown, heading = '## Example') {
  const at = markdown.indexOf(`\n${heading}\n`)
  if (at === -1) return undefined
  return /```ts\n([\s\S]*?)```/.exec(markdown.slice(at))?.[1]
}

// --- a Redis of our own --------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolvePort(port))
    })
  })
}

function ping(port) {
  return new Promise((resolvePing) => {
    const socket = new Socket()
    const done = (ok) => {
      socket.destroy()
      resolvePing(ok)
    }
    socket.once('error', () => done(false))
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')))
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'))
  })
}

async function startRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
  } catch {
    fail('redis-server is not on PATH (apt-get install redis-server, brew install redis)')
  }
  const port = await freePort()
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  child.stdout.on('data', (data) => (output += data))
  child.stderr.on('data', (data) => (output += data))
  servers.push(child)
  const deadline = Date.now() + 10_000
  while (!(await ping(port))) {
    if (child.exitCode !== null) fail(`redis-server exited (${child.exitCode}):\n${output}`)
    if (Date.now() > deadline)
      fail(`redis-server did not answer PING on port ${port} within 10 s:\n${output}`)
    await new Promise((wake) => setTimeout(wake, 25)) // polling for readiness, not waiting a fixed time
  }
  return `redis://127.0.0.1:${port}`
}

// --- the consumer project ------------------------------------------------------------------------------

const exportNames = (loader) => `
const names = {}
for (const name of ${JSON.stringify(packages.map((pkg) => pkg.name))}) names[name] = Object.keys(${loader}).sort()
`

// Shared by the ESM and CommonJS scripts: `lc` is the layercache module, `Redis` ioredis's class.
const smokeBody = `
async function smoke(lc, Redis, url) {
  const { CacheStack, MemoryLayer, RedisLayer, RedisInvalidationBus } = lc
  const clients = [new Redis(url), new Redis(url), new Redis(url)]
  const [redis, subscriberA, subscriberB] = clients
  const secret = 'consumer test secret, 32 chars.'
  const busA = new RedisInvalidationBus({ publisher: redis, subscriber: subscriberA, channel: 'ct:bus', signingSecret: secret })
  const busB = new RedisInvalidationBus({ publisher: redis, subscriber: subscriberB, channel: 'ct:bus', signingSecret: secret })
  const memoryB = new MemoryLayer({ ttl: 60_000 })
  const a = new CacheStack([new MemoryLayer({ ttl: 60_000 }), new RedisLayer({ client: redis, prefix: 'ct' })], { invalidationBus: busA, ttl: 60_000 })
  const b = new CacheStack([memoryB, new RedisLayer({ client: redis, prefix: 'ct' })], { invalidationBus: busB, ttl: 60_000 })
  await Promise.all([busA.ready, busB.ready])
  const check = (ok, what) => { if (!ok) throw new Error('consumer smoke: ' + what) }
  // ioredis 6 speaks RESP3 by default, with replies in the RESP2 shapes ('legacy'): all of this runs on it.
  // Its replyMapping 'resp3' changes the shapes we read: refused where the client is handed over.
  if (redis.options.protocol === 3) check(String(await redis.call('CLIENT', 'INFO')).includes('resp=3'), 'ioredis 6 did not speak RESP3')
  const resp3 = new Redis(url, { lazyConnect: true, protocol: 3, replyMapping: 'resp3' })
  try {
    new RedisLayer({ client: resp3 })
    check(false, 'a client with replyMapping "resp3" was accepted')
  } catch (error) {
    check(error instanceof lc.UnsupportedClientError && error.code === 'UNSUPPORTED_CLIENT', 'a "resp3" client: ' + error)
  } finally {
    resp3.disconnect()
  }
  // Two buses that start together flush (and fence loads in flight) until each has heard the other:
  // announce deletes from both until each stack applied one of the other's.
  const heard = new Set()
  const stopListening = [a.on('peerInvalidation', () => heard.add('a')), b.on('peerInvalidation', () => heard.add('b'))]
  for (const deadline = Date.now() + 5_000; heard.size < 2; ) {
    check(Date.now() < deadline, 'the two buses did not hear each other within 5 s')
    await Promise.all([a.delete('warm-up'), b.delete('warm-up')])
    await new Promise((wake) => setTimeout(wake, 20))
  }
  for (const stop of stopListening) stop()

  let loads = 0
  const values = await Promise.all(Array.from({ length: 50 }, () => a.getOrSet('product:1', async () => ({ id: 1, n: ++loads }), { tags: ['products'] })))
  check(loads === 1 && values.every((v) => v.n === 1), '50 concurrent misses ran the loader ' + loads + ' times')
  check((await b.get('product:1'))?.n === 1, 'the other stack did not read the value from Redis')
  check(await memoryB.has('product:1'), 'the other stack did not back-fill its memory layer')

  const dropped = new Promise((resolveDropped, reject) => {
    const timer = setTimeout(() => reject(new Error('consumer smoke: the bus did not carry the delete within 5 s')), 5_000)
    // A late warm-up message may come first: wait for the one that dropped the key.
    b.on('peerInvalidation', async () => { if (!(await memoryB.has('product:1'))) { clearTimeout(timer); resolveDropped() } })
  })
  await a.delete('product:1')
  await dropped

  await a.set('product:2', { id: 2 }, { tags: ['products'] })
  await a.invalidateByTag('products')
  check((await b.get('product:2')) === undefined, 'invalidateByTag left the key in Redis')

  a.close()
  b.close()
  await Promise.all([busA.close(), busB.close()])
  await Promise.all(clients.map((client) => client.quit()))
}
`

function writeConsumerFiles(project, quickStart) {
  const write = (name, content) => writeFileSync(join(project, name), content)
  write(
    'esm-smoke.mjs',
    `import { Redis } from 'ioredis'\nimport * as lc from 'layercache'\n${smokeBody}\n` +
      `const modules = {}\nfor (const name of ${JSON.stringify(packages.map((pkg) => pkg.name))}) modules[name] = await import(name)\n` +
      `${exportNames('modules[name]')}\nawait smoke(lc, Redis, process.env.REDIS_URL)\nconsole.log(JSON.stringify(names))\n`,
  )
  write(
    'cjs-smoke.cjs',
    `const { Redis } = require('ioredis')\nconst lc = require('layercache')\n${smokeBody}\n${exportNames('require(name)')}\n` +
      `smoke(lc, Redis, process.env.REDIS_URL).then(() => console.log(JSON.stringify(names)), (error) => { console.error(error); process.exit(1) })\n`,
  )
  // What a CommonJS TypeScript project compiles (node16/nodenext resolve `require` to the .d.cts files).
  write(
    'types-cjs.cts',
    `import { Redis, Cluster } from 'ioredis'\nimport { CacheStack, MemoryLayer, RedisLayer, RedisInvalidationBus, EntityCache, WriteBehind } from 'layercache'\n` +
      `export function build(redis: Redis, cluster: Cluster) {\n` +
      `  const stack = new CacheStack([new MemoryLayer({ ttl: 1_000 }), new RedisLayer({ client: redis }), new RedisLayer({ client: cluster, name: 'c' })])\n` +
      `  return [stack, RedisInvalidationBus, EntityCache, WriteBehind] as const\n}\n`,
  )
  for (const pkg of packages) {
    const readme = readFileSync(join(project, 'node_modules', pkg.name, 'README.md'), 'utf8')
    write(`readme-${pkg.dir}.ts`, readmeExample(readme))
  }
  write('readme-quick-start.ts', quickStart)
  // ioredis 6's own declarations import redis-errors, which ships no types: with skipLibCheck off every
  // ioredis 6 user meets TS7016 there, with or without us. Typing it `any` keeps our .d.ts checked.
  write('redis-errors.d.ts', "declare module 'redis-errors'\n")

  const base = {
    strict: true,
    // As a NestJS project has them (the @layercache/nestjs README example); nothing else uses decorators.
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    target: 'ES2022',
    lib: ['ES2023'],
    types: ['node'],
    skipLibCheck: false,
    noEmit: true,
  }
  const configs = {
    node16: { module: 'node16', moduleResolution: 'node16' },
    nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
    bundler: { module: 'esnext', moduleResolution: 'bundler' },
  }
  for (const [name, options] of Object.entries(configs)) {
    // Bundler resolution has no CommonJS mode, so the .cts file is checked with node16/nodenext only.
    const include = name === 'bundler' ? ['*.ts'] : ['*.ts', '*.cts']
    write(
      `tsconfig.${name}.json`,
      JSON.stringify({ compilerOptions: { ...base, ...options }, include }, null, 2),
    )
  }
  write(
    'tsconfig.emit.json',
    JSON.stringify(
      {
        extends: './tsconfig.nodenext.json',
        compilerOptions: { noEmit: false, outDir: 'out' },
        include: ['readme-*.ts', 'redis-errors.d.ts'],
      },
      null,
      2,
    ),
  )
}

async function consumer(major, quickStart, typescriptVersion) {
  const project = join(work, `ioredis-${major}`)
  mkdirSync(project)
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: `consumer-ioredis-${major}`, private: true, type: 'module' }, null, 2),
  )

  step(`ioredis ${major}: npm install the tarballs into ${project}`)
  run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      ...packages.map((pkg) => pkg.tarball),
      ...otherPeers,
      `ioredis@${major}`,
      `typescript@${typescriptVersion}`,
      '@types/node@20',
      ...INTEGRATION_PEERS,
    ],
    { cwd: project },
  )
  const ioredisCopies = run('npm', ['ls', 'ioredis', '--all', '--parseable'], { cwd: project, quiet: true })
    .split('\n')
    .filter((line) => line.trim() !== '')
  const unique = [...new Set(ioredisCopies)]
  if (unique.length !== 1) fail(`expected one ioredis, npm installed ${unique.length}:\n${unique.join('\n')}`)
  const installed = JSON.parse(readFileSync(join(unique[0], 'package.json'), 'utf8')).version
  if (!installed.startsWith(`${major}.`)) fail(`asked for ioredis ${major}, got ${installed}`)
  console.log(`    one ioredis: ${installed}`)

  writeConsumerFiles(project, quickStart)
  const tsc = join(project, 'node_modules', '.bin', 'tsc')
  for (const config of ['node16', 'nodenext', 'bundler']) {
    step(`ioredis ${installed}: tsc --noEmit, moduleResolution ${config} (READMEs, quick start, a .cts file)`)
    run(tsc, ['-p', `tsconfig.${config}.json`], { cwd: project })
  }

  run(tsc, ['-p', 'tsconfig.emit.json'], { cwd: project })
  const url = await startRedis()
  await runtime(project, `ioredis ${installed}, Node ${process.versions.node}`, process.execPath, url)
  for (const node of nodes)
    await runtime(project, `ioredis ${installed}, Node ${node.version}`, node.binary, url)
  if (major === majors[0]) for (const nest of NEST_MAJORS.slice(1)) nestMajor(project, nest, url)
}

/**
 * @layercache/nestjs's README example on another NestJS major its peer range allows: installs that major's
 * @nestjs/common and @nestjs/core into the project, type-checks and compiles the example again, runs it.
 */
function nestMajor(project, nest, url) {
  step(`NestJS ${nest}: the @layercache/nestjs README example, type-checked and run`)
  run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      `@nestjs/common@${nest}`,
      `@nestjs/core@${nest}`,
    ],
    { cwd: project },
  )
  const version = JSON.parse(
    readFileSync(join(project, 'node_modules', '@nestjs', 'core', 'package.json'), 'utf8'),
  ).version
  if (!version.startsWith(`${nest}.`)) fail(`asked for @nestjs/core ${nest}, got ${version}`)
  const tsc = join(project, 'node_modules', '.bin', 'tsc')
  run(tsc, ['-p', 'tsconfig.nodenext.json'], { cwd: project })
  run(tsc, ['-p', 'tsconfig.emit.json'], { cwd: project })
  for (const node of [{ version: process.versions.node, binary: process.execPath }, ...nodes]) {
    run(node.binary, [join('out', 'readme-nestjs.js')], {
      cwd: project,
      env: { REDIS_URL: url },
      quiet: true,
    })
    console.log(`    @nestjs/core ${version}, Node ${node.version}: readme-nestjs.js ok`)
  }
}

/** Runs the scripts, the compiled README examples and the bin of `project` with one Node binary. */
async function runtime(project, label, node, url) {
  const env = { REDIS_URL: url }
  step(`${label}: ESM and CommonJS scripts against ${url}`)
  const esm = JSON.parse(run(node, ['esm-smoke.mjs'], { cwd: project, env, quiet: true }))
  const cjs = JSON.parse(run(node, ['cjs-smoke.cjs'], { cwd: project, env, quiet: true }))
  for (const pkg of packages) {
    const [fromEsm, fromCjs] = [esm[pkg.name].join(), cjs[pkg.name].join()]
    if (fromEsm !== fromCjs) fail(`${pkg.name}: the ESM and CommonJS builds export different names`)
    if (esm[pkg.name].length === 0) fail(`${pkg.name} exports nothing`)
  }
  console.log(
    `    both builds: same exports (${packages.map((pkg) => `${pkg.name} ${esm[pkg.name].length}`).join(', ')})`,
  )

  step(`${label}: run every README example and the quick start`)
  for (const name of readdirSync(join(project, 'out')).filter((file) => file.endsWith('.js'))) {
    const from = Date.now()
    run(node, [join('out', name)], { cwd: project, env, quiet: true })
    console.log(`    ${name}: ok (${Date.now() - from} ms)`)
  }

  step(`${label}: the layercache bin`)
  // node_modules/.bin/layercache starts with `#!/usr/bin/env node`: run its target with this Node instead.
  const bin = join(project, 'node_modules', 'layercache', 'bin', 'layercache.mjs')
  run(node, [bin, '--help'], { cwd: project, quiet: true })
  const stats = JSON.parse(
    run(node, [bin, 'stats', '--redis', url, '--key-prefix', 'myapp', '--json'], {
      cwd: project,
      quiet: true,
    }),
  )
  console.log(`    layercache stats --json: ${Object.keys(stats).length} fields`)
}

/** Other Node majors to run the scripts with: the `node` package from npm (a Node binary), per major. */
function installNode(major) {
  const dir = join(work, `node-${major}`)
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `node-${major}`, private: true }))
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', `node@${major}`], {
    cwd: dir,
    quiet: true,
  })
  const binary = join(dir, 'node_modules', 'node', 'bin', 'node')
  const version = run(binary, ['--version'], { cwd: dir, quiet: true }).trim().replace(/^v/, '')
  if (!version.startsWith(`${major}.`)) fail(`asked npm for Node ${major}, got ${version}`)
  return { version, binary }
}

async function main() {
  if (build) {
    step('pnpm build')
    run('pnpm', ['build'], { cwd: root, quiet: true })
  }

  step(`pnpm pack ${packages.map((pkg) => pkg.name).join(', ')}`)
  for (const pkg of packages) {
    run('pnpm', ['pack', '--pack-destination', join(work, 'tarballs')], {
      cwd: join(root, 'packages', pkg.dir),
      quiet: true,
    })
    if (!existsSync(pkg.tarball)) fail(`pnpm pack did not write ${pkg.tarball}`)
  }

  step('tarball contents and manifests')
  for (const pkg of packages) {
    const unpacked = join(work, 'unpacked', pkg.dir)
    mkdirSync(unpacked, { recursive: true })
    run('tar', ['-xzf', pkg.tarball, '-C', unpacked, '--strip-components=1'], { quiet: true })
    const { importsIoredis } = checkTarball(pkg, unpacked)
    console.log(`    ${pkg.name}: ok${importsIoredis ? ' (ioredis: peer)' : ''}`)
  }

  step('publint --strict and @arethetypeswrong/cli on every tarball')
  const bin = (name) => join(root, 'node_modules', '.bin', name)
  for (const pkg of packages) {
    run(bin('publint'), ['run', pkg.tarball, '--strict'], { quiet: true })
    run(bin('attw'), [pkg.tarball, '--no-color', '--no-emoji', '--format', 'table-flipped'], { quiet: true })
    console.log(`    ${pkg.name}: publint ok, attw ok`)
  }

  const quickStart = readmeExample(readFileSync(join(root, 'README.md'), 'utf8'), '## Quick start')
  if (quickStart === undefined) fail('README.md has no ```ts block under "## Quick start"')
  const typescriptVersion = JSON.parse(
    readFileSync(join(root, 'node_modules', 'typescript', 'package.json'), 'utf8'),
  ).version
  if (nodeMajors.length > 0) {
    step(`Node ${nodeMajors.join(', ')} from npm (the runtime checks run with each, besides this Node)`)
    for (const major of nodeMajors) nodes.push(installNode(major))
    console.log(`    ${nodes.map((node) => `Node ${node.version}`).join(', ')}`)
  }
  for (const major of majors) await consumer(major, quickStart, typescriptVersion)
}

try {
  await main()
  console.log(
    `\nconsumer test passed in ${((Date.now() - started) / 1000).toFixed(1)} s (ioredis ${majors.join(', ')}; ` +
      `Node ${[process.versions.node, ...nodes.map((node) => node.version)].join(', ')})`,
  )
} catch (error) {
  failed = true
  console.error(`\nconsumer test FAILED: ${error.reported ? error.message : (error.stack ?? error)}`)
} finally {
  for (const server of servers) server.kill('SIGKILL')
  if (keep || failed) console.log(`scratch directory kept: ${work}`)
  else rmSync(work, { recursive: true, force: true })
  process.exitCode = failed ? 1 : 0
}
