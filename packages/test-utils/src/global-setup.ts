import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { RedisUnavailableForTestsError } from './errors'
import { detectRedisSource } from './redis-source'

const execFileAsync = promisify(execFile)

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparseable URL)'
  }
}

async function checkRedisUrl(url: string): Promise<void> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 3000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  // connect() only rejects with "Connection is closed"; the 'error' event carries the actual cause.
  let cause: Error | undefined
  client.on('error', (error: Error) => {
    cause ??= error
  })
  try {
    await client.connect()
    await client.ping()
  } catch (error) {
    const message = (cause ?? (error instanceof Error ? error : undefined))?.message ?? String(error)
    throw new RedisUnavailableForTestsError(`REDIS_URL=${redactUrl(url)} did not answer PING: ${message}`)
  } finally {
    client.disconnect()
  }
}

async function redisServerVersion(binary: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(binary, ['--version'], { timeout: 5000 })
    return /\bv=(\S+)/.exec(stdout)?.[1] ?? stdout.trim()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new RedisUnavailableForTestsError(`${binary} --version failed: ${message}`)
  }
}

/** vitest globalSetup: fail the whole run at once, with instructions, when tests would find no Redis. */
export default async function setup(): Promise<void> {
  const detected = await detectRedisSource()
  let description: string
  switch (detected.source) {
    case 'REDIS_URL':
      await checkRedisUrl(detected.url)
      description = `REDIS_URL=${redactUrl(detected.url)} (shared; keys are prefixed, never flushed)`
      break
    case 'redis-server':
      description = `redis-server ${await redisServerVersion(detected.binary)} at ${detected.binary}`
      break
    case 'testcontainers':
      description = 'testcontainers (redis:7-alpine in Docker)'
      break
  }
  console.log(`[@layercache/test-utils] Redis for tests: ${description}`)
}
