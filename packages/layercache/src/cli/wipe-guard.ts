import { CLEAR_ALL_CONFIRMATION } from '@layercache/layer-redis'
import { UsageError } from './cli-io'
import { productionMode } from './connection-options'

/** The options of every command that can wipe a whole cache, for parseArgs. */
export const WIPE_GUARD_OPTIONS = {
  confirm: { type: 'string' },
  'allow-production': { type: 'boolean' },
} as const

/** Their lines in a command's usage. */
export const WIPE_GUARD_USAGE = [
  `  --confirm <token>          must be exactly ${CLEAR_ALL_CONFIRMATION}`,
  '  --allow-production         required as well in production mode',
].join('\n')

interface GuardValues {
  readonly confirm?: string | undefined
  readonly 'allow-production'?: boolean | undefined
  readonly production?: boolean | undefined
}

export interface WipeGuard {
  readonly productionMode: boolean
  readonly allowProduction: boolean
}

/**
 * The one check before a command wipes `scope` (e.g. 'every key under "app:"'): --confirm must be exactly
 * CLEAR_ALL_CONFIRMATION and, in production mode (--production or NODE_ENV=production),
 * --allow-production must be given too. Runs while parsing, before anything connects; a refusal is a
 * UsageError (exit 2) saying that nothing was touched.
 */
export function guardWipe(values: GuardValues, env: NodeJS.ProcessEnv, scope: string): WipeGuard {
  if (values.confirm !== CLEAR_ALL_CONFIRMATION) {
    throw new UsageError(
      `refusing to wipe ${scope}: ` +
        (values.confirm === undefined
          ? `--confirm ${CLEAR_ALL_CONFIRMATION} is required`
          : `--confirm must be exactly ${CLEAR_ALL_CONFIRMATION}`) +
        '; nothing was touched',
    )
  }
  const production = productionMode(values, env)
  const allowProduction = values['allow-production'] === true
  if (production.on && !allowProduction) {
    throw new UsageError(
      `refusing to wipe ${scope} in production mode (${production.why}): ` +
        'pass --allow-production as well; nothing was touched',
    )
  }
  return { productionMode: production.on, allowProduction }
}
