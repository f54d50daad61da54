// A bare import (`ioredis`, `layercache`) that the importing file's own directory cannot resolve is
// resolved again from examples/playground, whose dependencies are the workspace's packages and ioredis.
const playground = new URL('../package.json', import.meta.url).href

const bare = (specifier) => !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(specifier)

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !bare(specifier) || context.parentURL === playground) {
      throw error
    }
    return next(specifier, { ...context, parentURL: playground })
  }
}
