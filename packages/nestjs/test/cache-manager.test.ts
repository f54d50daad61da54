// @nestjs/cache-manager's CACHE_MANAGER and CacheInterceptor, unchanged, on the LayercacheModule's stack
// through @layercache/keyv: a real Nest app over real HTTP, memory over a real Redis, two instances.
import { CacheClosedError, CacheStack } from '@layercache/core'
import { KeyvLayercache } from '@layercache/keyv'
import { eventually } from '@layercache/test-utils'
import { CACHE_MANAGER, CacheInterceptor, CacheModule, CacheTTL } from '@nestjs/cache-manager'
import {
  Controller,
  Get,
  type INestApplication,
  Inject,
  Injectable,
  Param,
  UseInterceptors,
} from '@nestjs/common'
import { Test } from '@nestjs/testing'
import type { Cache } from 'cache-manager'
import { afterEach, describe, expect, it } from 'vitest'
import { LayercacheModule } from '../src'
import { useFleet } from './support/fleet'

const { fleet } = useFleet()

@Injectable()
class Sessions {
  constructor(@Inject(CACHE_MANAGER) readonly cache: Cache) {}

  async open(id: string, user: string): Promise<void> {
    await this.cache.set(`session:${id}`, { user }, 60_000)
  }

  find(id: string): Promise<{ user: string } | undefined> {
    return this.cache.get(`session:${id}`)
  }

  async close(id: string): Promise<void> {
    await this.cache.del(`session:${id}`)
  }
}

@Controller('reports')
@UseInterceptors(CacheInterceptor)
class ReportsController {
  static runs = 0

  @Get(':day')
  @CacheTTL(60_000)
  report(@Param('day') day: string): { day: string; run: number } {
    return { day, run: ++ReportsController.runs }
  }
}

let apps: INestApplication[] = []
afterEach(async () => {
  await Promise.all(apps.map((app) => app.close()))
  apps = []
})

/**
 * A Nest app whose CacheModule stores in the LayercacheModule's stack, in a namespace of it (so that
 * `cache.clear()` clears that namespace, not the whole stack): the wiring docs/integrations.md shows.
 */
async function start(stack: CacheStack): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      LayercacheModule.forRoot({ stack }),
      CacheModule.registerAsync({
        inject: [CacheStack],
        useFactory: (layercache: CacheStack) => ({
          stores: [new KeyvLayercache(layercache.namespace('nest'))],
        }),
      }),
    ],
    providers: [Sessions],
    controllers: [ReportsController],
  }).compile()
  const app = moduleRef.createNestApplication({ logger: false })
  await app.listen(0, '127.0.0.1')
  apps.push(app)
  return { app, url: await app.getUrl() }
}

describe('@nestjs/cache-manager on the stack', () => {
  it('CACHE_MANAGER reads and writes the stack, and a delete reaches the other instance', async () => {
    const [a, b] = await fleet(2)
    const onA = (await start(a!.stack)).app.get(Sessions)
    const onB = (await start(b!.stack)).app.get(Sessions)
    await onA.open('s1', 'ada')
    expect(await a!.stack.has('nest:session:s1')).toBe(true)
    expect(await onB.find('s1')).toEqual({ user: 'ada' })
    expect(b!.inMemory('nest:session:s1')).toBeDefined()

    await onA.close('s1')
    await eventually(() => b!.inMemory('nest:session:s1') === undefined, "B's memory drops the session")
    expect(await onB.find('s1')).toBeUndefined()
  })

  it('CacheInterceptor caches a route in the stack; the stack’s invalidation reaches it', async () => {
    const [app] = await fleet(1)
    const { url } = await start(app!.stack)
    const get = async (path: string) => (await fetch(`${url}${path}`)).json()
    const runs = ReportsController.runs
    const first = await get('/reports/2026-12-01')
    expect(await get('/reports/2026-12-01')).toEqual(first)
    expect(ReportsController.runs - runs).toBe(1)
    // The interceptor keys by URL: in the stack, under the adapter's namespace view. (@nestjs/cache-manager
    // gives Keyv no namespace of its own unless CacheModule's `namespace` option is set.)
    expect(await app!.stack.has('nest:/reports/2026-12-01')).toBe(true)

    expect(await app!.stack.invalidateByPrefix('nest:/reports/')).toBe(1)
    expect(await get('/reports/2026-12-01')).toEqual({ day: '2026-12-01', run: runs + 2 })
  })

  it('clear() stays in the namespace; closing the app closes the stack once, through LayercacheModule', async () => {
    const [app] = await fleet(1)
    let closed = 0
    const moduleRef = await Test.createTestingModule({
      imports: [
        LayercacheModule.forRoot({ stack: app!.stack, onClose: () => void closed++ }),
        CacheModule.registerAsync({
          inject: [CacheStack],
          useFactory: (layercache: CacheStack) => ({
            stores: [new KeyvLayercache(layercache.namespace('nest'))],
          }),
        }),
      ],
    }).compile()
    await moduleRef.init()
    const cache = moduleRef.get<Cache>(CACHE_MANAGER)
    await cache.set('old', 'v')
    await app!.stack.set('native', 'kept')
    await cache.clear() // the adapter's namespace only
    expect(await app!.stack.get('native')).toBe('kept')
    expect(await cache.get('old')).toBeUndefined()
    await cache.set('k', 'v')
    await moduleRef.close()
    expect(closed).toBe(1)
    await expect(app!.stack.get('nest:k')).rejects.toThrow(CacheClosedError)
  })
})
