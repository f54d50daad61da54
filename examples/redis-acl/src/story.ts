import { readFileSync } from 'node:fs'
import { Redis, type RedisOptions } from 'ioredis'
import {
  CacheStack,
  MemoryLayer,
  RedisInvalidationBus,
  RedisLayer,
  RedisSingleFlightCoordinator,
} from 'layercache'

/** The ACL this example ships: `users.acl`, next to this folder. */
export const ACL_FILE = new URL('../users.acl', import.meta.url)

/** What the example's instances use; every key and channel of the cache starts with "myapp:". */
export const CHANNEL = 'myapp:invalidation'
const SECRET = process.env.LAYERCACHE_INVALIDATION_SECRET ?? 'an-example-secret-of-32-characters'
/** Placeholders from users.acl. */
export const APP_USER = { username: 'myapp', password: 'myapp-example-password' }
export const NEIGHBOUR_USER = { username: 'reporting', password: 'reporting-example-password' }
/** Larger than Redis's default pub/sub output buffer limit (32 MB hard). */
export const BIG_MESSAGE_BYTES = 40 * 1024 * 1024

export interface AclUser {
  readonly name: string
  readonly rules: readonly string[]
}

/** The `user <name> <rules…>` lines of an ACL file. */
export function readAclFile(file: URL = ACL_FILE): AclUser[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('user '))
    .map((line) => {
      const [, name, ...rules] = line.split(/\s+/)
      return { name: name!, rules }
    })
}

/**
 * Sends each user of the file as `ACL SETUSER <name> reset <rules…>` through `admin` (what `aclfile` would
 * load at start). `default` goes last: switching it off leaves connections already authenticated working.
 */
export async function applyAcl(admin: Redis, users: readonly AclUser[] = readAclFile()): Promise<void> {
  const ordered = [...users.filter((u) => u.name !== 'default'), ...users.filter((u) => u.name === 'default')]
  for (const { name, rules } of ordered) await admin.call('ACL', 'SETUSER', name, 'reset', ...rules)
}

export interface AppInstance {
  readonly name: string
  readonly stack: CacheStack
  readonly bus: RedisInvalidationBus
  /** What this instance's memory layer holds for `key`, without going to Redis. */
  inMemory(key: string): unknown
  close(): Promise<void>
}

/** One instance of the application: memory over Redis, the signed bus and fleet single-flight. */
export async function startAppInstance(
  name: string,
  url: string,
  credentials: Pick<RedisOptions, 'username' | 'password'> = {},
): Promise<AppInstance> {
  const connect = () => {
    const client = new Redis(url, { ...credentials, maxRetriesPerRequest: 2 })
    client.on('error', () => {}) // reconnects are reported by the bus (unverified) and the stack
    return client
  }
  const client = connect()
  const subscriber = connect()
  const bus = new RedisInvalidationBus({
    publisher: client,
    subscriber,
    channel: CHANNEL,
    signingSecret: SECRET,
  })
  const coordinator = new RedisSingleFlightCoordinator({ client, prefix: 'myapp:sf:' })
  const memory = new MemoryLayer({ ttl: 60_000 })
  const stack = new CacheStack([memory, new RedisLayer({ client, prefix: 'myapp:cache:', ttl: 600_000 })], {
    invalidationBus: bus,
    singleFlightCoordinator: coordinator,
    generation: 1,
  })
  await bus.ready
  return {
    name,
    stack,
    bus,
    inMemory: (key) => memory.get(`g${stack.generation}:${key}`),
    async close() {
      stack.close()
      await bus.close()
      await coordinator.close()
      subscriber.disconnect()
      client.disconnect()
    },
  }
}

/** Polls `condition` (every 5 ms) until it holds; fails after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Each instance invalidates a key of its own and waits until every other one dropped it: the flushes each
 * does as it first hears the others are behind them, and the bus works for everyone.
 */
async function settle(instances: readonly AppInstance[]): Promise<void> {
  for (const sender of instances) {
    const key = `settle:${sender.name}`
    await sender.stack.set(key, 1)
    for (const other of instances) await other.stack.get(key)
    await sender.stack.delete(key)
    await until(
      () => instances.every((other) => other.inMemory(key) === undefined),
      `${sender.name}'s delete reached every instance`,
    )
  }
}

const flushesOf = (instances: readonly AppInstance[]) =>
  instances.map((instance) => instance.stack.getStats().unverifiedFlushes)

export interface AttackOutcome {
  /** Per instance: memory flushes while the big message was handled. */
  readonly flushes: number[]
  /** Per instance: whether it still held the warm value from memory afterwards. */
  readonly stillInMemory: boolean[]
  /** The error Redis answered the publish with, if it refused it. */
  readonly refused: string | undefined
}

/**
 * Two instances cache `product:1`; then `attacker` publishes one message of 40 MB on the bus channel. On a
 * Redis without an ACL this takes no secret: Redis disconnects every subscriber whose output buffer the
 * message overflows, and each instance, unable to know what it missed, flushes its memory.
 */
export async function bigPublish(
  instances: readonly AppInstance[],
  attacker: Redis,
  log: (line: string) => void = () => {},
): Promise<AttackOutcome> {
  const [a] = instances as [AppInstance]
  await a.stack.set('product:1', { id: 1, price: 10 })
  for (const instance of instances) await instance.stack.get('product:1')
  const before = flushesOf(instances)
  let refused: string | undefined
  try {
    const receivers = await attacker.publish(CHANNEL, Buffer.alloc(BIG_MESSAGE_BYTES, 'x'))
    log(`  the 40 MB message was accepted for ${receivers} subscriber(s)`)
    // Redis drops each subscriber whose output buffer overflowed; each instance notices its connection
    // close and flushes.
    await until(
      () => flushesOf(instances).every((count, i) => count > before[i]!),
      'every instance flushed after its subscriber was disconnected',
      30_000,
    )
  } catch (error) {
    refused = (error as Error).message
    log(`  Redis refused it: ${refused}`)
    // A genuine invalidation still reaches every instance: their subscriptions are intact.
    await a.stack.delete('settle:after-attack')
    await settle(instances)
  }
  const flushes = flushesOf(instances).map((count, i) => count - before[i]!)
  const stillInMemory = instances.map((instance) => instance.inMemory('product:1') !== undefined)
  log(`  flushes per instance: ${flushes.join(', ')}; still in memory: ${stillInMemory.join(', ')}`)
  return { flushes, stillInMemory, refused }
}

export interface AclStorySummary {
  /** What Redis answered the neighbour's attempts on the app's channels and keys (NOPERM errors). */
  readonly neighbourRefusals: readonly string[]
  /** What the neighbour may still do with its own channel: subscribers reached (0, nobody listens). */
  readonly neighbourOwnPublish: number
  readonly attack: AttackOutcome
  /** A delete on one instance still reached the other's memory after the attack. */
  readonly busWorks: boolean
}

/**
 * The story on a Redis we may reconfigure (a throwaway server: this changes its users). `adminUrl`
 * connects as the default user before the ACL switches it off.
 */
export async function runAclStory(
  adminUrl: string,
  log: (line: string) => void = console.log,
): Promise<AclStorySummary> {
  const admin = new Redis(adminUrl)
  const instances: AppInstance[] = []
  const neighbour = new Redis(adminUrl, { ...NEIGHBOUR_USER, lazyConnect: true })
  neighbour.on('error', () => {})
  const listener = neighbour.duplicate()
  listener.on('error', () => {})
  try {
    log(`Loading ${ACL_FILE.pathname.split('/').slice(-2).join('/')}: users myapp, reporting; default off.`)
    await applyAcl(admin)
    for (const name of ['app-a', 'app-b']) instances.push(await startAppInstance(name, adminUrl, APP_USER))
    await settle(instances)
    log('Two instances connected as "myapp", sharing invalidations on myapp:invalidation.')

    await neighbour.connect()
    log('The "reporting" program tries the app’s channels and keys:')
    const neighbourRefusals: string[] = []
    const attempts: [string, () => Promise<unknown>][] = [
      ['SPUBLISH myapp:invalidation', () => neighbour.spublish(CHANNEL, 'x')],
      ['PUBLISH myapp:sf:{done}', () => neighbour.publish('myapp:sf:{done}', 'a-key-hash')],
      ['SET myapp:cache:~gen', () => neighbour.set('myapp:cache:~gen', String(Number.MAX_SAFE_INTEGER))],
      ['SUBSCRIBE myapp:invalidation', () => listener.subscribe(CHANNEL)],
    ]
    for (const [what, attempt] of attempts) {
      try {
        await attempt()
        log(`  ${what}: allowed (the ACL does not protect it!)`)
      } catch (error) {
        neighbourRefusals.push((error as Error).message)
        log(`  ${what}: ${(error as Error).message}`)
      }
    }
    const neighbourOwnPublish = await neighbour.publish('reporting:events', 'its own channel works')
    log('  PUBLISH reporting:events: allowed (its own channel)')

    log('It publishes 40 MB on myapp:invalidation:')
    const attack = await bigPublish(instances, neighbour, log)
    if (attack.refused !== undefined) neighbourRefusals.unshift(attack.refused)

    const [a, b] = instances as [AppInstance, AppInstance]
    await a.stack.delete('product:1')
    await until(() => b.inMemory('product:1') === undefined, 'app-b drops product:1')
    log('A price change on app-a still reaches app-b’s memory: the bus works for the app.')
    return { neighbourRefusals, neighbourOwnPublish, attack, busWorks: true }
  } finally {
    for (const instance of instances) await instance.close()
    listener.disconnect()
    neighbour.disconnect()
    admin.disconnect()
  }
}

/** The same 40 MB publish on a Redis without an ACL, by a client that has no secret: every instance flushes. */
export async function runWithoutAcl(
  url: string,
  log: (line: string) => void = console.log,
): Promise<AttackOutcome> {
  const instances: AppInstance[] = []
  const anyone = new Redis(url)
  try {
    for (const name of ['app-a', 'app-b']) instances.push(await startAppInstance(name, url))
    await settle(instances)
    log('Without an ACL, anyone who can reach Redis publishes 40 MB on myapp:invalidation:')
    return await bigPublish(instances, anyone, log)
  } finally {
    for (const instance of instances) await instance.close()
    anyone.disconnect()
  }
}
