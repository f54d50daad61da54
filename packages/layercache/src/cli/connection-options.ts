import { UsageError } from './cli-io'
import type { ConnectOptions } from './redis-connection'

/** The command-line options every command that talks to Redis takes, for parseArgs. */
export const CONNECTION_OPTIONS = {
  redis: { type: 'string' },
  cluster: { type: 'boolean' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'require-tls': { type: 'boolean' },
  production: { type: 'boolean' },
  'allow-plaintext': { type: 'boolean' },
} as const

/** Their lines in every command's usage. */
export const CONNECTION_USAGE = [
  '  --redis <url>              redis:// or rediss:// URL of the Redis (required); its password is',
  '                             never printed',
  '  --cluster                  the URL is a node of a Redis Cluster',
  '  --tls                      connect with TLS even with a redis:// URL',
  "  --tls-ca <file>            PEM file of the CA that signed the server's certificate (implies --tls)",
  '  --require-tls              refuse a URL that is not rediss:// (unless --tls)',
  '  --production               production mode (also when NODE_ENV=production): plaintext is refused',
  '  --allow-plaintext          allow a plaintext redis:// URL in production mode',
].join('\n')

interface ConnectionValues {
  readonly redis?: string | undefined
  readonly cluster?: boolean | undefined
  readonly tls?: boolean | undefined
  readonly 'tls-ca'?: string | undefined
  readonly 'require-tls'?: boolean | undefined
  readonly production?: boolean | undefined
  readonly 'allow-plaintext'?: boolean | undefined
}

/** Whether the command runs in production mode, and what said so (for messages). */
export function productionMode(
  values: ConnectionValues,
  env: NodeJS.ProcessEnv,
): { readonly on: boolean; readonly why: string } {
  if (values.production === true) return { on: true, why: '--production' }
  return env.NODE_ENV === 'production' ? { on: true, why: 'NODE_ENV=production' } : { on: false, why: '' }
}

/** Where and how to connect, from the parsed options (UsageError without --redis). */
export function connectionOf(values: ConnectionValues, env: NodeJS.ProcessEnv): ConnectOptions {
  if (values.redis === undefined) throw new UsageError('--redis <url> is required')
  return {
    url: values.redis,
    cluster: values.cluster === true,
    tls: values.tls === true,
    tlsCa: values['tls-ca'],
    requireTls: values['require-tls'] === true,
    production: productionMode(values, env).on,
    allowPlaintext: values['allow-plaintext'] === true,
  }
}
