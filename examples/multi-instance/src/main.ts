import { connectRedis } from '@layercache/test-utils/example-redis'
import { runMultiInstanceStory } from './story'

const redis = await connectRedis()
console.log(`Using ${redis.description}.`)
try {
  if (redis.client === undefined) throw new Error('This example needs Redis: the instances share it.')
  const { host, port } = redis.client.options
  await runMultiInstanceStory(process.env.REDIS_URL ?? `redis://${host}:${port}`)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await redis.close()
}
