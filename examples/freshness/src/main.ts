import { runFreshnessDemo } from './freshness-demo'

runFreshnessDemo().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
