import { LayerCacheError } from '../errors'

/** A glob pattern was rejected (empty, too long, control characters, not a string). */
export class InvalidPatternError extends LayerCacheError {
  constructor(message: string) {
    super('INVALID_PATTERN', message)
  }
}
