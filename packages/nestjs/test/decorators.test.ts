// @Cacheable and @CacheInvalidate in a real NestJS application (Express), over real HTTP, on memory over a
// real Redis with the invalidation bus (and the fleet-wide single-flight coordinator where said).
import {
  CacheStack,
  InvalidKeyError,
  InvalidOptionError,
  InvalidTtlError,
  LayerUnavailableError,
} from '@layercache/core'
import { RedisLayer } from '@layercache/layer-redis'
import { eventually } from '@layercache/test-utils'
import { afterEach, describe, expect, it } from 'vitest'
import { Cacheable, CacheInvalidate, InvalidationAfterCallError } from '../src'
import { ProductService, ProductsDb, QuoteService, type RunningApp, startApp } from './support/app'
import { useFleet } from './support/fleet'

const { fleet, redis } = useFleet()

let apps: RunningApp[] = []
afterEach(async () => {
  await Promise.all(apps.map((running) => running.app.close()))
  apps = []
})

async function start(stack: CacheStack, db: ProductsDb): Promise<RunningApp> {
  const running = await startApp(stack, db)
  apps.push(running)
  return running
}

/** Holds the database's reads until `count` requests reached the apps, so they all miss together. */
function holdReadsUntil(db: ProductsDb, count: number, running: readonly RunningApp[]): void {
  db.gate = eventually(
    () => running.reduce((sum, app) => sum + app.arrived, 0) >= count,
    `${count} requests arrived`,
    { timeoutMs: 60_000, intervalMs: 2 },
  )
}

describe('@Cacheable', () => {
  it('caches a provider method’s result under its key and tags, in memory and Redis', async () => {
    const [app] = await fleet(1)
    const db = new ProductsDb()
    const http = await start(app!.stack, db)
    expect(await http.get('/products/1')).toEqual({ status: 200, body: { id: 1, name: 'Anvil', price: 249 } })
    expect(await http.get('/products/1')).toEqual({ status: 200, body: { id: 1, name: 'Anvil', price: 249 } })
    expect(db.reads).toBe(1)
    expect(app!.inMemory('product:1')).toBeDefined()
    expect(await app!.stack.invalidateByTag('products')).toBe(1)
    expect((await http.get('/products/1')).body).toEqual({ id: 1, name: 'Anvil', price: 249 })
    expect(db.reads).toBe(2)

    // The default key: ClassName.method and the JSON of the arguments.
    expect((await http.get('/products/count')).body).toBe(2)
    expect(await app!.stack.has('ProductService.count:[]')).toBe(true)
  })

  it('1000 concurrent identical cold requests run the method once', async () => {
    const [app] = await fleet(1)
    const db = new ProductsDb()
    const http = await start(app!.stack, db)
    holdReadsUntil(db, 1000, [http])
    const answers = await Promise.all(Array.from({ length: 1000 }, () => http.get('/products/2')))
    expect(db.reads).toBe(1)
    expect(answers.every((answer) => answer.status === 200 && (answer.body as { id: number }).id === 2)).toBe(
      true,
    )
    expect(app!.stack.getStats().coalesced).toBeGreaterThan(0)
  })

  it('across two app instances with a coordinator, 1000 concurrent cold requests run the method once', async () => {
    const [a, b] = await fleet(2, { coordinated: true })
    const db = new ProductsDb() // one database behind both instances
    const onA = await start(a!.stack, db)
    const onB = await start(b!.stack, db)
    holdReadsUntil(db, 1000, [onA, onB])
    const answers = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? onA : onB).get('/products/1')),
    )
    expect(db.reads).toBe(1)
    expect(new Set(answers.map((answer) => JSON.stringify(answer))).size).toBe(1)
  })

  it('a method error reaches every waiting request and caches nothing', async () => {
    const [app] = await fleet(1)
    const db = new ProductsDb()
    db.rows.set(3, { id: 3, name: 'Broken', price: -1 })
    const http = await start(app!.stack, db)
    holdReadsUntil(db, 20, [http])
    const answers = await Promise.all(Array.from({ length: 20 }, () => http.get('/products/3')))
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(500))
    expect(db.reads).toBe(1)
    expect(await app!.stack.has('product:3')).toBe(false)
    db.gate = undefined
    db.rows.set(3, { id: 3, name: 'Fixed', price: 10 })
    expect((await http.get('/products/3')).body).toEqual({ id: 3, name: 'Fixed', price: 10 })
  })

  it('decorates route handlers above or below the route decorator, in a namespace', async () => {
    const [app] = await fleet(1)
    const http = await start(app!.stack, new ProductsDb())
    expect((await http.get('/pages/about')).body).toEqual({ name: 'about', render: 1 })
    expect((await http.get('/pages/about')).body).toEqual({ name: 'about', render: 1 })
    expect((await http.get('/pages')).body).toEqual({ render: 2 })
    expect((await http.get('/pages')).body).toEqual({ render: 2 })
    expect(await app!.stack.has('site:page:about')).toBe(true)
    expect(await app!.stack.has('site:page-index')).toBe(true)
    // Tags are scoped by the namespace, as in stack.namespace('site').
    expect(await app!.stack.namespace('site').invalidateByTag('pages')).toBe(1)
    expect((await http.get('/pages/about')).body).toEqual({ name: 'about', render: 3 })
  })

  it('caches methods of request-scoped providers (bound by class)', async () => {
    const [app] = await fleet(1)
    const http = await start(app!.stack, new ProductsDb())
    const before = QuoteService.loads
    const first = (await http.get('/quotes/9')).body as { load: number }
    const second = (await http.get('/quotes/9')).body as { load: number }
    expect(second).toEqual(first)
    expect(QuoteService.loads - before).toBe(1)
  })

  it('caches methods of objects a factory or a value provides', async () => {
    const [app] = await fleet(1)
    class Tally {
      runs = 0
      constructor(readonly name: string) {}

      @Cacheable({ key: (of: string) => `tally:${of}` })
      async count(_of: string): Promise<number> {
        return ++this.runs
      }
    }
    const { Test } = await import('@nestjs/testing')
    const { LayercacheModule } = await import('../src')
    const moduleRef = await Test.createTestingModule({
      imports: [LayercacheModule.forRoot({ stack: app!.stack })],
      providers: [
        { provide: 'FROM_FACTORY', useFactory: () => new Tally('factory') },
        { provide: 'AS_VALUE', useValue: new Tally('value') },
      ],
    }).compile()
    await moduleRef.init()
    for (const token of ['FROM_FACTORY', 'AS_VALUE']) {
      const tally = moduleRef.get<Tally>(token)
      expect(await tally.count(token)).toBe(1)
      expect(await tally.count(token)).toBe(1)
      expect(tally.runs).toBe(1)
    }
    await moduleRef.close()
  })

  it('a key or tags function that throws rejects the call; the method does not run', async () => {
    const [app] = await fleet(1)
    let runs = 0
    class Lookup {
      @Cacheable({
        key: (id: number) => {
          if (id < 0) throw new RangeError('negative id')
          return `lookup:${id}`
        },
        tags: (id: number) => (id === 0 ? [''] : [`lookup:${id}`]),
      })
      async find(id: number): Promise<number> {
        runs++
        return id
      }
    }
    const { Test } = await import('@nestjs/testing')
    const { LayercacheModule } = await import('../src')
    const moduleRef = await Test.createTestingModule({
      imports: [LayercacheModule.forRoot({ stack: app!.stack })],
      providers: [Lookup],
    }).compile()
    await moduleRef.init()
    const lookup = moduleRef.get(Lookup)
    const thrown = lookup.find(-1)
    expect(thrown).toBeInstanceOf(Promise)
    await expect(thrown).rejects.toBeInstanceOf(RangeError)
    await expect(lookup.find(0)).rejects.toBeInstanceOf(InvalidOptionError) // the stack refuses the tag
    expect(runs).toBe(0)
    expect(await lookup.find(3)).toBe(3)
    await moduleRef.close()
  })

  it('outside Nest the method runs as written, uncached', async () => {
    const db = new ProductsDb()
    const service = new ProductService(db)
    expect(await service.find(1)).toEqual({ id: 1, name: 'Anvil', price: 249 })
    expect(await service.find(1)).toEqual({ id: 1, name: 'Anvil', price: 249 })
    expect(db.reads).toBe(2)
  })
})

describe('@CacheInvalidate', () => {
  it('invalidates after the write, on every instance (over the bus)', async () => {
    const [a, b] = await fleet(2)
    const db = new ProductsDb()
    const onA = await start(a!.stack, db)
    const onB = await start(b!.stack, db)
    expect((await onB.get('/products/1')).body).toMatchObject({ price: 249 })
    expect(b!.inMemory('product:1')).toBeDefined()

    expect((await onA.put('/products/1/price', { price: 199 })).body).toMatchObject({ price: 199 })
    await eventually(() => b!.inMemory('product:1') === undefined, "B's memory drops product 1")
    expect((await onB.get('/products/1')).body).toMatchObject({ price: 199 })
    expect(db.reads).toBe(2)
  })

  it('a method that throws invalidates nothing', async () => {
    const [app] = await fleet(1)
    const http = await start(app!.stack, new ProductsDb())
    await http.get('/products/1')
    expect((await http.put('/products/404/price', { price: 1 })).status).toBe(500)
    expect(await app!.stack.has('product:1')).toBe(true)
  })

  it('a failed invalidation after a successful call rejects with the call’s result', async () => {
    const client = redis().createClient()
    await client.quit() // a Redis layer whose connection is gone: every command fails
    const stack = new CacheStack([new RedisLayer({ client, prefix: 'gone:' })])
    const db = new ProductsDb()
    const http = await start(stack, db)
    const answer = await http.put('/products/2/price', { price: 999 })
    expect(answer.status).toBe(500)
    expect(db.rows.get(2)?.price).toBe(999)

    // The same through the method itself, where the error can be looked at.
    const service = http.app.get(ProductService)
    const error = await service.updatePrice(2, 1000).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(InvalidationAfterCallError)
    expect((error as InvalidationAfterCallError).result).toMatchObject({ id: 2, price: 1000 })
    expect((error as InvalidationAfterCallError).cause).toBeInstanceOf(LayerUnavailableError)
    expect((error as InvalidationAfterCallError).code).toBe('INVALIDATION_AFTER_CALL')
  })
})

describe('the decorators refuse bad options when they are applied', () => {
  const decorate = (decorator: (target: object, key: string, descriptor: PropertyDescriptor) => void) => {
    class Target {
      async method(_id: number): Promise<number> {
        return 1
      }
    }
    decorator(Target.prototype, 'method', Object.getOwnPropertyDescriptor(Target.prototype, 'method')!)
  }

  it('@Cacheable', () => {
    expect(() => Cacheable({ ttl: -1 })).toThrow(InvalidTtlError)
    expect(() => Cacheable({ tll: 5 } as never)).toThrow(InvalidOptionError)
    expect(() => Cacheable({ key: 5 } as never)).toThrow(/key must be a string or a function/)
    expect(() => Cacheable({ tags: 'products' } as never)).toThrow(/tags must be an array/)
    expect(() => Cacheable({ tags: [''] })).toThrow(InvalidOptionError)
    expect(() => Cacheable({ namespace: '~x' })).toThrow(InvalidKeyError)
    expect(() => Cacheable({ prefix: '' })).toThrow(InvalidKeyError)
    // A constant key on a method with parameters would answer every call with the first one's result.
    expect(() => decorate(Cacheable({ key: 'one-for-all' }) as never)).toThrow(/constant key/)
    expect(() =>
      (Cacheable() as (target: object, key: string, descriptor: PropertyDescriptor) => void)({}, 'field', {
        value: 5,
      }),
    ).toThrow(/decorates methods only/)
    class WithStatic {
      readonly kind = 'has an instance side too'
      static async load(): Promise<number> {
        return 1
      }
    }
    expect(() =>
      (Cacheable() as (target: object, key: string, descriptor: PropertyDescriptor) => void)(
        WithStatic,
        'load',
        Object.getOwnPropertyDescriptor(WithStatic, 'load')!,
      ),
    ).toThrow(/instance methods, not static ones/)
  })

  it('@CacheInvalidate', () => {
    expect(() => CacheInvalidate({})).toThrow(/needs keys, tags, prefixes or patterns/)
    expect(() => CacheInvalidate(undefined as never)).toThrow(InvalidOptionError)
    expect(() => CacheInvalidate({ tag: ['x'] } as never)).toThrow(InvalidOptionError)
    expect(() => CacheInvalidate({ tags: 'x' } as never)).toThrow(/tags must be an array or a function/)
    expect(() => CacheInvalidate({ keys: ['~reserved'] })).toThrow(InvalidKeyError)
    expect(() => CacheInvalidate({ patterns: [''] })).toThrow(/pattern/i)
    expect(() => CacheInvalidate({ tags: ['x'], tagMode: 'some' as never })).toThrow(InvalidOptionError)
  })

  it('@CacheInvalidate checks what a function gives before the method runs: a bad plan changes nothing', async () => {
    const [app] = await fleet(1)
    let calls = 0
    class Writer {
      @CacheInvalidate({ keys: (id: string) => [`item:${id}`] })
      async write(_id: string): Promise<void> {
        calls++
      }
    }
    const { Test } = await import('@nestjs/testing')
    const { LayercacheModule } = await import('../src')
    const moduleRef = await Test.createTestingModule({
      imports: [LayercacheModule.forRoot({ stack: app!.stack })],
      providers: [Writer],
    }).compile()
    await moduleRef.init()
    const writer = moduleRef.get(Writer)
    await expect(writer.write('bad\u0000id')).rejects.toBeInstanceOf(InvalidKeyError)
    expect(calls).toBe(0)
    await writer.write('7')
    expect(calls).toBe(1)
    await moduleRef.close()
  })
})

// Checked by `pnpm typecheck`: the decorators fit async methods whose arguments their functions take.
describe('the decorators’ types', () => {
  it('accept async methods whose leading arguments the option functions take, and nothing else', () => {
    class Typed {
      @Cacheable({ key: (id: number) => `n:${id}` })
      async byId(id: number, _verbose?: boolean): Promise<number> {
        return id
      }

      // @ts-expect-error a cached method returns a promise
      @Cacheable()
      sync(): number {
        return 1
      }

      // @ts-expect-error the key function's arguments are the method's
      @Cacheable({ key: (id: string) => id })
      async byNumber(id: number): Promise<number> {
        return id
      }

      // @ts-expect-error the tags function's arguments are the method's
      @CacheInvalidate({ tags: (name: string, _force: boolean) => [name] })
      async rename(_name: string): Promise<void> {}
    }
    expect(new Typed()).toBeInstanceOf(Typed)
  })
})

it('a decorator called as a standard (TC39) decorator says what to configure', () => {
  const standard = Cacheable() as unknown as (
    method: unknown,
    context: { kind: string; name: string },
  ) => void
  expect(() => standard(async () => 1, { kind: 'method', name: 'find' })).toThrow(/experimentalDecorators/)
})
