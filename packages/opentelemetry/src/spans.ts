import { tracingChannel } from 'node:diagnostics_channel'
import type { OperationDone } from '@layercache/core'
import { TRACING_CHANNELS } from '@layercache/core'
import {
  type Attributes,
  context as otelContext,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api'

type Context = OperationDone['context'] & { result?: unknown; error?: unknown }

/** What a span's attributes show of the key: the stored key, or nothing (keys may carry personal data). */
export interface SpanOptions {
  readonly recordKeys: boolean
}

/**
 * Turns layercache's tracing channels into spans: one per call, named `layercache.<operation>`, a child of
 * whatever span is active when the call starts; a load is a child of the getOrSet it runs for. Attributes
 * say what explains the result. No AsyncLocalStorage of its own: a load names its caller's context, so
 * nesting costs a WeakMap lookup, not async hooks on every promise of the process.
 */
export class SpanBridge {
  private readonly spans = new WeakMap<object, Span>()
  private readonly unsubscribers: (() => void)[] = []

  constructor(
    private readonly tracer: Tracer,
    private readonly options: SpanOptions,
  ) {
    for (const name of Object.values(TRACING_CHANNELS)) this.bridge(name)
  }

  stop(): void {
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe()
  }

  private bridge(name: string): void {
    const channel = tracingChannel<unknown, Context>(name)
    const spanName = name.replace(':', '.')
    const open = (context: Context): void => {
      const caller =
        'parent' in context && context.parent !== undefined ? this.spans.get(context.parent) : undefined
      const base = otelContext.active()
      const span = this.tracer.startSpan(
        spanName,
        { kind: SpanKind.INTERNAL, attributes: this.startAttributes(context) },
        caller === undefined ? base : trace.setSpan(base, caller),
      )
      this.spans.set(context, span)
    }
    const close = (context: Context) => {
      const span = this.spans.get(context)
      if (span === undefined) return
      this.spans.delete(context)
      span.setAttributes(this.endAttributes(context))
      if (context.error !== undefined) {
        const error = context.error
        if (error instanceof Error) span.recordException(error)
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : String(error),
        })
      }
      span.end()
    }
    const ignore = () => {}
    const handlers = {
      start: open,
      asyncStart: ignore,
      error: ignore,
      asyncEnd: close,
      // A call that threw before returning its promise ends here (no asyncEnd follows).
      end: (context: Context) => {
        if (context.error !== undefined) close(context)
      },
    }
    channel.subscribe(handlers)
    this.unsubscribers.push(() => channel.unsubscribe(handlers))
  }

  private startAttributes(context: Context): Attributes {
    const attributes: Attributes = { 'layercache.operation': context.operation }
    if ('cache' in context) attributes['layercache.cache'] = context.cache
    if ('keyCount' in context) {
      attributes['layercache.key_count'] = context.keyCount
      if (context.generation !== undefined) attributes['layercache.generation'] = context.generation
    }
    if ('key' in context && this.options.recordKeys) attributes['layercache.key'] = context.key
    switch (context.operation) {
      case 'invalidate':
        attributes['layercache.invalidation.kind'] = context.kind
        if (this.options.recordKeys) attributes['layercache.invalidation.targets'] = [...context.target]
        break
      case 'load':
        attributes['layercache.load.trigger'] = context.trigger
        break
      case 'bus.publish':
      case 'bus.receive':
        attributes['layercache.bus.operations'] = context.operations.length
        break
      case 'writeBehind.flush':
        attributes['layercache.write_behind.queue'] = context.queue
        attributes['layercache.write_behind.received'] = context.received
        attributes['layercache.write_behind.count'] = context.count
        break
    }
    return attributes
  }

  private endAttributes(context: Context): Attributes {
    const attributes: Attributes = {}
    const set = (name: string, value: string | number | boolean | undefined) => {
      if (value !== undefined) attributes[name] = value
    }
    switch (context.operation) {
      case 'invalidate':
        set('layercache.invalidation.count', context.count)
        break
      case 'load':
        set('layercache.layer', context.layer)
        set('layercache.loaded', context.loaded)
        set('layercache.loader_ms', context.loaderMs)
        set('layercache.stale', context.stale)
        set('layercache.write_back', context.writeBack)
        set('layercache.fleet_wait', context.waitedForFleet)
        set('layercache.degraded', context.degraded)
        set('layercache.circuit_open', context.circuitOpen)
        if (context.loaderError !== undefined) set('layercache.loader_error', describe(context.loaderError))
        break
      case 'bus.receive':
        if (context.sentAt !== undefined && context.receivedAt !== undefined) {
          set('layercache.bus.lag_ms', Math.max(0, context.receivedAt - context.sentAt))
        }
        break
      case 'bus.publish':
        break
      case 'writeBehind.flush':
        set('layercache.write_behind.outcome', context.outcome)
        set('layercache.write_behind.retried', context.retried)
        set('layercache.write_behind.dead_lettered', context.deadLettered)
        break
      default:
        set('layercache.layer', context.layer)
        if (context.operation === 'get' || context.operation === 'getOrSet' || context.operation === 'mget') {
          set('layercache.hit', context.hit ?? false)
        }
        set('layercache.loaded', context.loaded)
        set('layercache.coalesced', context.coalesced)
        set('layercache.stale', context.stale)
        set('layercache.fenced', context.fenced)
        set('layercache.degraded', context.degraded)
        set('layercache.circuit_open', context.circuitOpen)
    }
    return attributes
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}
