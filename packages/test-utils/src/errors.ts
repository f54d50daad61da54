export const HOW_TO_INSTALL_REDIS_SERVER =
  'Install Redis so `redis-server` is on PATH, e.g. `apt-get install redis-server` or `brew install redis`.'

export const HOW_TO_GET_REDIS = [
  'To run these tests, do one of:',
  '  - install Redis so `redis-server` is on PATH (e.g. `apt-get install redis-server` or `brew install redis`);',
  '  - set REDIS_URL=redis://host:port to a Redis the tests may write to (keys get a random prefix;',
  '    it is never flushed);',
  '  - start Docker, so testcontainers can run redis:7-alpine.',
].join('\n')

export class RedisUnavailableForTestsError extends Error {
  override readonly name = 'RedisUnavailableForTestsError'

  constructor(reason = 'No Redis is available for tests.', howTo = HOW_TO_GET_REDIS) {
    super(`${reason}\n${howTo}`)
  }
}
