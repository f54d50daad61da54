// Resolves `ioredis` to the build ioredis-override.mjs was given (see there).
let target

export function initialize(url) {
  target = url
}

export async function resolve(specifier, context, next) {
  if (specifier === 'ioredis') return { url: target, shortCircuit: true }
  return next(specifier, context)
}
