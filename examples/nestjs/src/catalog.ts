import { Cacheable, CacheInvalidate, InjectCache } from '@layercache/nestjs'
import { CACHE_MANAGER } from '@nestjs/cache-manager'
import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Inject,
  Injectable,
  NotFoundException,
  Param,
  ParseIntPipe,
  Post,
  Put,
} from '@nestjs/common'
import type { Cache } from 'cache-manager'
import type { CacheStack } from 'layercache'
import { CatalogDb, type Product } from './catalog-db'

/** The catalog's reads and writes, cached with layercache's decorators. */
@Injectable()
export class CatalogService {
  constructor(
    @Inject(CatalogDb) private readonly db: CatalogDb,
    @InjectCache() private readonly cache: CacheStack,
  ) {}

  // One query per product however many requests miss at once, on every instance (the coordinator).
  // `null` is cached too: a product known not to exist costs no query either.
  @Cacheable({ key: (id: number) => `product:${id}`, tags: (id: number) => [`product:${id}`], ttl: 300_000 })
  async product(id: number): Promise<Product | null> {
    return (await this.db.product(id)) ?? null
  }

  @Cacheable({
    key: (category: string) => `category:${category}`,
    tags: (category: string) => [`category:${category}`],
    ttl: 300_000,
  })
  async category(category: string): Promise<Product[]> {
    return this.db.category(category)
  }

  // The decorator invalidates what the arguments name (the product), after the write. The category list
  // the product appears in is known only once the row is read, so the method invalidates it itself,
  // through the injected stack. Both reach every instance's memory over the bus.
  @CacheInvalidate({ tags: (id: number) => [`product:${id}`] })
  async updatePrice(id: number, price: number): Promise<Product | undefined> {
    const updated = await this.db.updatePrice(id, price)
    if (updated !== undefined) await this.cache.invalidateByTag(`category:${updated.category}`)
    return updated
  }
}

@Controller('products')
export class ProductsController {
  constructor(@Inject(CatalogService) private readonly catalog: CatalogService) {}

  @Get(':id')
  async product(@Param('id', ParseIntPipe) id: number): Promise<Product> {
    const product = await this.catalog.product(id)
    if (product === null) throw new NotFoundException(`no product ${id}`)
    return product
  }

  @Put(':id/price')
  async updatePrice(
    @Param('id', ParseIntPipe) id: number,
    @Body() body: { price?: unknown },
  ): Promise<Product> {
    if (typeof body.price !== 'number' || !(body.price >= 0))
      throw new BadRequestException('price must be a number ≥ 0')
    const updated = await this.catalog.updatePrice(id, body.price)
    if (updated === undefined) throw new NotFoundException(`no product ${id}`)
    return updated
  }
}

@Controller('categories')
export class CategoriesController {
  constructor(@Inject(CatalogService) private readonly catalog: CatalogService) {}

  @Get(':name')
  category(@Param('name') name: string): Promise<Product[]> {
    return this.catalog.category(name)
  }
}

/**
 * Sessions through @nestjs/cache-manager's CACHE_MANAGER, code written for cache-manager: the store is the
 * same stack (a namespace of it), so a logout on one instance reaches the others' memory too.
 */
@Controller('sessions')
export class SessionsController {
  constructor(@Inject(CACHE_MANAGER) private readonly sessions: Cache) {}

  @Post()
  async open(@Body() body: { user?: unknown }): Promise<{ id: string }> {
    if (typeof body.user !== 'string' || body.user === '')
      throw new BadRequestException('user must be a name')
    const id = Math.random().toString(36).slice(2, 10)
    await this.sessions.set(`session:${id}`, { user: body.user }, 30 * 60_000)
    return { id }
  }

  @Get(':id')
  async find(@Param('id') id: string): Promise<{ user: string }> {
    const session = await this.sessions.get<{ user: string }>(`session:${id}`)
    if (session === undefined) throw new NotFoundException('no such session')
    return session
  }

  @Delete(':id')
  @HttpCode(204)
  async close(@Param('id') id: string): Promise<void> {
    await this.sessions.del(`session:${id}`)
  }
}
