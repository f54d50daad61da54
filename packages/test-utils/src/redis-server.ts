import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { trackChild, trackDir, untrackDir } from './child-registry'
import { HOW_TO_INSTALL_REDIS_SERVER, RedisUnavailableForTestsError } from './errors'
import { findRedisServer } from './executables'
import { freePort } from './free-port'
import { rawCommand, redisProcessId } from './raw-command'

export interface RedisServerHandle {
  readonly host: string
  readonly port: number
  readonly url: string
  /** The redis-server pid while it runs, otherwise undefined. */
  readonly pid: number | undefined
  readonly running: boolean
  /** Graceful SIGTERM (SIGCONT first if paused), waits for exit, removes the data dir. */
  stop(): Promise<void>
  /** SIGKILL, waits for exit. Simulates a crash; the data dir is kept so restart() can reuse it. */
  kill(): Promise<void>
  /** SIGSTOP: connections stay open, commands hang. */
  pause(): void
  /** SIGCONT. */
  resume(): void
  /** Starts again on the same port with the same args (stopping it first if running); waits for PING. */
  restart(): Promise<void>
}

export interface StartRedisServerOptions {
  /** Fixed port; by default a free one is picked (and re-picked if another process grabs it first). */
  port?: number
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[]
}

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 10_000
const POLL_INTERVAL_MS = 25
const PORT_ATTEMPTS = 5
const RESTART_PORT_ATTEMPTS = 20
const OUTPUT_TAIL_CHARS = 4000

class PortInUseError extends Error {}

function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isAlive(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const onExit = () => {
      clearTimeout(timer)
      resolve(true)
    }
    const timer = setTimeout(() => {
      child.off('exit', onExit)
      resolve(false)
    }, timeoutMs)
    child.once('exit', onExit)
  })
}

async function terminate(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (!isAlive(child)) return
  // A stopped process only acts on SIGTERM once continued; SIGKILL works regardless.
  if (signal === 'SIGTERM') child.kill('SIGCONT')
  child.kill(signal)
  if (await waitForExit(child, STOP_TIMEOUT_MS)) return
  child.kill('SIGKILL')
  await waitForExit(child, STOP_TIMEOUT_MS)
}

async function launch(
  binary: string,
  port: number,
  dir: string,
  args: readonly string[],
): Promise<ChildProcess> {
  const child = spawn(
    binary,
    [
      ...['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'],
      ...['--protected-mode', 'no', '--daemonize', 'no', '--dir', dir],
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  trackChild(child)
  let output = ''
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let spawnError: Error | undefined
  child.once('error', (error) => {
    spawnError = error
  })
  let outputClosed = false
  child.once('close', () => {
    outputClosed = true
  })
  // A forgotten server must not keep the test process alive; child-registry makes sure it dies with us.
  child.unref()
  ;(child.stdout as Socket | null)?.unref()
  ;(child.stderr as Socket | null)?.unref()

  const label = () => `redis-server on ${HOST}:${port} (${binary} ${args.join(' ')})`.trimEnd()
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (spawnError) throw new Error(`${label()} failed to spawn: ${spawnError.message}`)
    if (!isAlive(child)) {
      // 'exit' can come before the last output (e.g. the bind error) has been read.
      for (const until = Date.now() + 1000; !outputClosed && Date.now() < until; ) await sleep(10)
      const status = child.exitCode ?? child.signalCode
      if (output.includes('Address already in use')) {
        throw new PortInUseError(`${label()}: port in use. Output:\n${output}`)
      }
      throw new Error(`${label()} exited (${status}) before answering PING. Output:\n${output}`)
    }
    try {
      // The pid check stops a foreign server that already listens on this port from passing as ours.
      const pong = await rawCommand(HOST, port, 'PING', 500)
      if (pong === 'PONG' && (await redisProcessId(HOST, port, 500)) === child.pid) return child
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await terminate(child, 'SIGKILL')
      throw new Error(`${label()} did not answer PING within ${READY_TIMEOUT_MS} ms. Output:\n${output}`)
    }
    await sleep(POLL_INTERVAL_MS)
  }
}

async function makeDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'layercache-redis-'))
  trackDir(dir)
  return dir
}

async function removeDataDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  untrackDir(dir)
}

class SpawnedRedisServer implements RedisServerHandle {
  readonly host = HOST
  readonly url: string
  #child: ChildProcess | undefined
  #dir: string | undefined

  constructor(
    readonly port: number,
    private readonly binary: string,
    private readonly args: readonly string[],
    dir: string,
    child: ChildProcess,
  ) {
    this.url = `redis://${HOST}:${port}`
    this.#dir = dir
    this.#child = child
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined
  }

  get running(): boolean {
    return this.#child !== undefined && isAlive(this.#child)
  }

  async stop(): Promise<void> {
    if (this.#child) await terminate(this.#child, 'SIGTERM')
    if (this.#dir !== undefined) await removeDataDir(this.#dir)
    this.#dir = undefined
  }

  async kill(): Promise<void> {
    if (this.#child) await terminate(this.#child, 'SIGKILL')
  }

  pause(): void {
    if (!this.#child || !this.running) throw new Error(`cannot pause ${this.url}: it is not running`)
    this.#child.kill('SIGSTOP')
  }

  resume(): void {
    if (this.#child && this.running) this.#child.kill('SIGCONT')
  }

  async restart(): Promise<void> {
    if (this.#child) await terminate(this.#child, 'SIGTERM')
    this.#dir ??= await makeDataDir()
    // The old listening socket can linger for a moment after the process is reaped.
    for (let attempt = 1; ; attempt++) {
      try {
        this.#child = await launch(this.binary, this.port, this.#dir, this.args)
        return
      } catch (error) {
        if (!(error instanceof PortInUseError) || attempt >= RESTART_PORT_ATTEMPTS) throw error
        await sleep(100)
      }
    }
  }
}

/** Spawns a throwaway redis-server (no persistence, own temp dir) and waits until it answers PING. */
export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServerHandle> {
  const binary = findRedisServer()
  if (binary === undefined) {
    throw new RedisUnavailableForTestsError(
      'redis-server was not found on PATH.',
      HOW_TO_INSTALL_REDIS_SERVER,
    )
  }
  const args = [...(opts.args ?? [])]
  const dir = await makeDataDir()
  try {
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort())
      try {
        const child = await launch(binary, port, dir, args)
        return new SpawnedRedisServer(port, binary, args, dir, child)
      } catch (error) {
        const canRetry = error instanceof PortInUseError && opts.port === undefined && attempt < PORT_ATTEMPTS
        if (!canRetry) throw error
      }
    }
  } catch (error) {
    await removeDataDir(dir)
    throw error
  }
}
