// testcontainers is an optional dependency and a last resort, so it is only ever imported dynamically.

export interface RedisContainer {
  readonly url: string
  stop(): Promise<void>
}

let dockerCheck: Promise<string | undefined> | undefined

/** Why testcontainers cannot run Redis here (not installed, no Docker), or undefined when it can. */
export function testcontainersUnavailableReason(): Promise<string | undefined> {
  dockerCheck ??= (async () => {
    try {
      const { getContainerRuntimeClient } = await import('testcontainers')
      await getContainerRuntimeClient()
      return undefined
    } catch (error) {
      return error instanceof Error ? error.message : String(error)
    }
  })()
  return dockerCheck
}

export async function startRedisContainer(): Promise<RedisContainer> {
  const { GenericContainer, Wait } = await import('testcontainers')
  const container = await new GenericContainer('redis:7-alpine')
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start()
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    stop: async () => {
      await container.stop()
    },
  }
}
