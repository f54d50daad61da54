import { connect, createServer, type Server, type Socket } from 'node:net'

export interface StartTcpProxyOptions {
  /** Default 127.0.0.1. */
  readonly targetHost?: string
  readonly targetPort: number
}

/**
 * A TCP proxy for fault tests: point a client at `url` instead of the server, then break the network.
 * Every accepted connection gets its own upstream connection (a "pair").
 */
export interface TcpProxyHandle {
  readonly host: string
  readonly port: number
  /** `redis://127.0.0.1:<port>`: no credentials or db; copy those from the real URL if the target needs them. */
  readonly url: string
  /** Client+upstream pairs currently open. */
  readonly connections: number
  /**
   * Resets (RST) both sockets of every open pair at once: clients see ECONNRESET and close, and may reconnect
   * through the proxy, which keeps accepting.
   */
  cut(): void
  /**
   * A network partition: every socket stays open but no byte is forwarded in either direction (bytes are
   * dropped, not buffered) and no close is passed on. New connections are accepted but never forwarded.
   */
  blackhole(): void
  /**
   * Ends a blackhole. Bytes dropped during it are gone, so every stream that lived through it is corrupt
   * (a Redis client would match replies to the wrong commands): restore() therefore also cuts every open
   * pair, and clients reconnect cleanly. Does nothing when no blackhole is on.
   */
  restore(): void
  /** New connections are reset right after being accepted; open pairs keep working. */
  refuse(): void
  /** Ends refuse(). */
  accept(): void
  /** Stops listening and destroys every socket. Idempotent. */
  close(): Promise<void>
}

const HOST = '127.0.0.1'

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
}

function reset(socket: Socket): void {
  // resetAndDestroy() sends an RST, but on a socket still connecting it would act only once connected.
  if (socket.destroyed) return
  if (!socket.connecting) socket.resetAndDestroy()
  if (!socket.destroyed) socket.destroy()
}

class TcpProxy implements TcpProxyHandle {
  readonly host = HOST
  readonly url: string
  readonly #pairs = new Set<Pair>()
  readonly #sockets = new Set<Socket>()
  #blackholed = false
  #refusing = false
  #closing: Promise<void> | undefined

  constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.url = `redis://${HOST}:${port}`
    server.on('connection', (client) => this.#accept(client))
  }

  get connections(): number {
    return this.#pairs.size
  }

  cut(): void {
    for (const pair of this.#pairs) {
      reset(pair.client)
      reset(pair.upstream)
    }
    this.#pairs.clear()
  }

  blackhole(): void {
    this.#blackholed = true
  }

  restore(): void {
    if (!this.#blackholed) return
    this.#blackholed = false
    this.cut()
  }

  refuse(): void {
    this.#refusing = true
  }

  accept(): void {
    this.#refusing = false
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      for (const socket of this.#sockets) socket.destroy()
      this.#sockets.clear()
      this.#pairs.clear()
    })
    return this.#closing
  }

  #track(socket: Socket): void {
    socket.on('error', () => {})
    socket.setNoDelay(true)
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
  }

  #accept(client: Socket): void {
    this.#track(client)
    if (this.#refusing || this.#closing) {
      reset(client)
      return
    }
    const upstream = connect({ host: this.targetHost, port: this.targetPort })
    this.#track(upstream)
    const pair: Pair = { client, upstream }
    this.#pairs.add(pair)
    this.#forward(client, upstream)
    this.#forward(upstream, client)
    const forget = () => {
      if (client.destroyed && upstream.destroyed) this.#pairs.delete(pair)
    }
    client.once('close', forget)
    upstream.once('close', forget)
  }

  #forward(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.#blackholed || to.destroyed) return
      if (!to.write(chunk)) {
        from.pause()
        to.once('drain', () => from.resume())
      }
    })
    // Passes a close on (after flushing what was already written), unless the network is "partitioned".
    from.once('close', () => {
      if (this.#blackholed || to.destroyed) return
      to.end(() => to.destroy())
    })
  }
}

/** Starts a TCP proxy on a free port of 127.0.0.1 in front of targetHost:targetPort. */
export function startTcpProxy({
  targetHost = HOST,
  targetPort,
}: StartTcpProxyOptions): Promise<TcpProxyHandle> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      server.off('error', reject)
      server.on('error', () => {})
      const address = server.address()
      if (typeof address !== 'object' || address === null) {
        server.close()
        reject(new Error(`startTcpProxy: unexpected address ${String(address)}`))
        return
      }
      resolve(new TcpProxy(server, address.port, targetHost, targetPort))
    })
  })
}
