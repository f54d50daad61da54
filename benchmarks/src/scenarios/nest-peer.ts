// The NestJS app of the "NestJS route" benchmark, in a process of its own (the load generator runs in the
// bench process, so the two do not share an event loop). Two routes answer the same JSON body: /static/:id
// returns a constant object, /cached/:id returns a @Cacheable method's result (a memory hit once warm).
// /slow/:id is @Cacheable too, with a loader that takes `loadMs`: the cold-stampede rounds use it.
import 'reflect-metadata'
import { setTimeout as delay } from 'node:timers/promises'
import { Cacheable, LayercacheModule } from '@layercache/nestjs'
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Controller, Get, Module, Param } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { PAYLOAD, type Product } from '../payload'

export interface NestPeerInit {
  readonly url: string
  readonly prefix: string
  readonly loadMs: number
}

const counts = { cached: 0, slow: 0 }
let loadMs = 0

@Controller()
class BenchController {
  @Get('static/:id')
  static(@Param('id') _id: string): Product {
    return PAYLOAD
  }

  @Get('cached/:id')
  @Cacheable({ key: (id: string) => `p:${id}`, ttl: 600_000 })
  async cached(@Param('id') _id: string): Promise<Product> {
    counts.cached++
    return PAYLOAD
  }

  @Get('slow/:id')
  @Cacheable({ key: (id: string) => `slow:${id}`, ttl: 600_000 })
  async slow(@Param('id') _id: string): Promise<Product> {
    counts.slow++
    await delay(loadMs)
    return PAYLOAD
  }
}

const api = async (init: NestPeerInit) => {
  loadMs = init.loadMs
  const client = new Redis(init.url)
  const stack = new CacheStack([
    new MemoryLayer({ ttl: 600_000, maxSize: 10_000 }),
    new RedisLayer({ client, prefix: init.prefix }),
  ])
  @Module({ imports: [LayercacheModule.forRoot({ stack })], controllers: [BenchController] })
  class BenchModule {}
  const app = await NestFactory.create(BenchModule, { logger: false })
  await app.listen(0, '127.0.0.1')
  const url = await app.getUrl()
  return {
    url: () => url,
    calls: () => ({ ...counts }),
    /** CPU time this process used so far (user + system), in microseconds. */
    cpuMicros: () => {
      const { user, system } = process.cpuUsage()
      return user + system
    },
    async close() {
      await app.close()
      client.disconnect()
    },
  }
}

export type NestPeerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
