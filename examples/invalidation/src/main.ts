import { connectRedis } from '@layercache/test-utils/example-redis'
import { runInvalidationStory } from './story'

const redis = await connectRedis()
console.log(`Using ${redis.description}.`)
try {
  await runInvalidationStory(redis.client)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await redis.close()
}
