import { createHmac, timingSafeEqual } from 'node:crypto'
import { InvalidOptionError } from '@layercache/core'

/**
 * HMAC-SHA256 over the channel and the message body (which holds the payload, the sender id and its
 * sequence number). The first secret signs; every secret verifies, so a secret is rotated by deploying
 * [new, old] everywhere, then [new] once every instance runs the first step.
 */
export class MessageSigner {
  private readonly secrets: readonly Buffer[]

  constructor(secrets: string | readonly string[]) {
    const list = typeof secrets === 'string' ? [secrets] : secrets
    if (!Array.isArray(list) || list.length === 0) {
      throw new InvalidOptionError('signingSecret must be a non-empty string or a non-empty array of them')
    }
    this.secrets = list.map((secret, i) => {
      if (typeof secret !== 'string' || secret.length < 16) {
        throw new InvalidOptionError(
          `signingSecret${list.length > 1 ? `[${i}]` : ''} must be a string of at least 16 characters`,
        )
      }
      return Buffer.from(secret, 'utf8')
    })
  }

  sign(channel: string, body: string): string {
    return this.mac(this.secrets[0]!, channel, body).toString('base64url')
  }

  verify(channel: string, body: string, signature: string): boolean {
    const given = Buffer.from(signature, 'base64url')
    if (given.length !== 32) return false
    return this.secrets.some((secret) => timingSafeEqual(this.mac(secret, channel, body), given))
  }

  private mac(secret: Buffer, channel: string, body: string): Buffer {
    return createHmac('sha256', secret).update(channel).update('\n').update(body).digest()
  }
}
