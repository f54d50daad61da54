import { generationPrefix } from '@layercache/core'
import { generationKeyOf, type RedisClient } from '@layercache/layer-redis'
import { UsageError } from './cli-io'

/** `--generation`: a number, or the one every instance shares now. */
export type GenerationChoice = number | 'current'

export function readGenerationOption(text: string | undefined): GenerationChoice | undefined {
  if (text === undefined) return undefined
  if (text === 'current') return 'current'
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--generation: expected a whole number or "current", got ${JSON.stringify(text)}`)
  }
  return Number(text)
}

/** The generation recorded under the layer prefix; undefined when none is (the stack starts at 0). */
export async function recordedGeneration(
  client: RedisClient,
  keyPrefix: string,
): Promise<number | undefined> {
  const text = await client.get(generationKeyOf(keyPrefix))
  if (text === null) return undefined
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${generationKeyOf(keyPrefix)} holds ${JSON.stringify(text)}, not a generation`)
  }
  return value
}

/** The generation's number and key prefix ("g<n>:"), or none without --generation. */
export async function resolveGeneration(
  client: RedisClient,
  keyPrefix: string,
  choice: GenerationChoice | undefined,
): Promise<{ readonly generation: number; readonly prefix: string } | undefined> {
  if (choice === undefined) return undefined
  const generation = choice === 'current' ? ((await recordedGeneration(client, keyPrefix)) ?? 0) : choice
  return { generation, prefix: generationPrefix(generation) }
}
