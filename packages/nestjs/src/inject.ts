import { CacheStack } from '@layercache/core'
import { Inject } from '@nestjs/common'
import { getCacheNamespaceToken } from './tokens'

/**
 * Injects the module's CacheStack. The stack class is its token too, so with `emitDecoratorMetadata` a
 * parameter typed `CacheStack` needs no decorator; this one works under every compiler (tsx, esbuild, SWC
 * without metadata).
 */
export function InjectCache(): PropertyDecorator & ParameterDecorator {
  return Inject(CacheStack)
}

/**
 * Injects `stack.namespace(name)`, registered with `LayercacheModule.forRoot({ namespaces })` (everywhere)
 * or `LayercacheModule.forFeature([name])` (in the importing module).
 */
export function InjectCacheNamespace(name: string): PropertyDecorator & ParameterDecorator {
  return Inject(getCacheNamespaceToken(name))
}
