import type { CacheStack } from '@layercache/core'
import {
  Body,
  Controller,
  Get,
  type INestApplication,
  Inject,
  Injectable,
  Param,
  ParseIntPipe,
  Put,
  Scope,
} from '@nestjs/common'
import { Test } from '@nestjs/testing'
import { Cacheable, CacheInvalidate, LayercacheModule } from '../../src'

export interface Product {
  readonly id: number
  readonly name: string
  readonly price: number
}

/**
 * Stands in for the database: counts reads, and holds them at `gate` while a test wants a stampede to
 * pile up. One per test, shared by every app instance of the test (as one database is).
 */
export class ProductsDb {
  reads = 0
  writes = 0
  gate: Promise<void> | undefined
  readonly rows = new Map<number, Product>([
    [1, { id: 1, name: 'Anvil', price: 249 }],
    [2, { id: 2, name: 'Rocket skates', price: 1299 }],
  ])

  async find(id: number): Promise<Product | undefined> {
    this.reads++
    await this.gate
    const row = this.rows.get(id)
    if (row === undefined) return undefined
    if (row.price < 0) throw new Error(`product ${id} is corrupt`)
    return row
  }

  async updatePrice(id: number, price: number): Promise<Product> {
    const row = this.rows.get(id)
    if (row === undefined) throw new Error(`no product ${id}`)
    this.writes++
    const updated = { ...row, price }
    this.rows.set(id, updated)
    return updated
  }
}

@Injectable()
export class ProductService {
  constructor(@Inject(ProductsDb) private readonly db: ProductsDb) {}

  @Cacheable({
    key: (id: number) => `product:${id}`,
    tags: (id: number) => ['products', `product:${id}`],
    ttl: 60_000,
  })
  async find(id: number): Promise<Product | undefined> {
    return this.db.find(id)
  }

  /** Default key: `ProductService.count:[]`. */
  @Cacheable({ ttl: 60_000 })
  async count(): Promise<number> {
    await this.db.find(0)
    return this.db.rows.size
  }

  @CacheInvalidate({ tags: (id: number) => [`product:${id}`] })
  async updatePrice(id: number, price: number): Promise<Product> {
    return this.db.updatePrice(id, price)
  }
}

@Controller('products')
export class ProductsController {
  constructor(@Inject(ProductService) private readonly products: ProductService) {}

  @Get('count')
  count(): Promise<number> {
    return this.products.count()
  }

  @Get(':id')
  async find(@Param('id', ParseIntPipe) id: number): Promise<Product | { missing: number }> {
    return (await this.products.find(id)) ?? { missing: id }
  }

  @Put(':id/price')
  update(@Param('id', ParseIntPipe) id: number, @Body() body: { price: number }): Promise<Product> {
    return this.products.updatePrice(id, body.price)
  }
}

/** @Cacheable on route handlers themselves, above and below the route decorator. */
@Controller('pages')
export class PagesController {
  renders = 0

  @Cacheable({ key: (name: string) => `page:${name}`, tags: ['pages'], namespace: 'site' })
  @Get(':name')
  async page(@Param('name') name: string): Promise<{ name: string; render: number }> {
    return { name, render: ++this.renders }
  }

  @Get()
  @Cacheable({ key: 'page-index', namespace: 'site' })
  async index(): Promise<{ render: number }> {
    return { render: ++this.renders }
  }
}

/** A request-scoped provider (Nest makes one per request): its class is bound, not an instance. */
@Injectable({ scope: Scope.REQUEST })
export class QuoteService {
  static loads = 0

  @Cacheable({ key: (id: number) => `quote:${id}` })
  async quote(id: number): Promise<{ id: number; load: number }> {
    return { id, load: ++QuoteService.loads }
  }
}

@Controller('quotes')
export class QuotesController {
  constructor(@Inject(QuoteService) private readonly quotes: QuoteService) {}

  @Get(':id')
  quote(@Param('id', ParseIntPipe) id: number): Promise<{ id: number; load: number }> {
    return this.quotes.quote(id)
  }
}

export interface RunningApp {
  readonly app: INestApplication
  readonly url: string
  /** Requests that reached the app (counted before routing). */
  arrived: number
  get(path: string): Promise<{ status: number; body: unknown }>
  put(path: string, body: unknown): Promise<{ status: number; body: unknown }>
}

/** A Nest application on `stack` and `db`, listening on a free port, as a test client sees it. */
export async function startApp(stack: CacheStack, db: ProductsDb): Promise<RunningApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [LayercacheModule.forRoot({ stack })],
    providers: [{ provide: ProductsDb, useValue: db }, ProductService, QuoteService],
    controllers: [ProductsController, PagesController, QuotesController],
  }).compile()
  const app = moduleRef.createNestApplication({ logger: false })
  const running: RunningApp = {
    app,
    url: '',
    arrived: 0,
    get: (path) => request(running.url, 'GET', path),
    put: (path, body) => request(running.url, 'PUT', path, body),
  }
  app.use((_request: unknown, _response: unknown, next: () => void) => {
    running.arrived++
    next()
  })
  await app.listen(0, '127.0.0.1')
  Object.assign(running, { url: await app.getUrl() })
  return running
}

async function request(
  url: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}
