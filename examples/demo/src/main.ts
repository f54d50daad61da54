import { RedisUnreachableError } from '@layercache/test-utils/example-redis'
import { runDemo } from './demo'

try {
  await runDemo()
} catch (error) {
  // A Redis that does not answer is the user's setup, not a bug: one line says which and what to do.
  console.error(error instanceof RedisUnreachableError ? `demo: ${error.message}` : error)
  process.exitCode = 1
}
