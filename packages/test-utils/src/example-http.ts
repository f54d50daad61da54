import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** For the runnable examples' JSON services: thrown by a route, answered as `{ error: message }` with `status`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** A request handler: the status and the body to send as JSON. */
export type JsonRoute = (request: IncomingMessage) => Promise<[status: number, body: unknown]>

export interface JsonServerOptions {
  /** The status of an error that is not an HttpError (its message is still the body). Default 500. */
  readonly errorStatus?: (error: unknown) => number
}

/**
 * A node:http server answering every request with the JSON of what `route` resolves with; an HttpError
 * it throws is answered with its status, anything else with `errorStatus` (500).
 */
export function jsonServer(route: JsonRoute, { errorStatus = () => 500 }: JsonServerOptions = {}): Server {
  return createServer((request, response) => {
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' })
      response.end(JSON.stringify(body))
    }
    route(request).then(
      ([status, body]) => reply(status, body),
      (error: unknown) => {
        const status = error instanceof HttpError ? error.status : errorStatus(error)
        reply(status, { error: (error as Error).message })
      },
    )
  })
}

/** Starts `server` listening (port 0: any free one); resolves with its base URL, `http://host:port`. */
export function listen(server: Server, port = 0, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve(`http://${host}:${(server.address() as AddressInfo).port}`))
  })
}

/** Stops `server` listening and drops its open connections; resolves once it is closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

export interface ReadJsonMessages {
  /** The 413 answer. Default 'the body is too large'. */
  readonly tooLarge?: string
  /** The 400 answer. Default 'the body is not JSON'. */
  readonly notJson?: string
}

/**
 * The request body, parsed as JSON. More than `maxLength` characters is an HttpError 413 (read no
 * further), text that is not JSON an HttpError 400.
 */
export async function readJson(
  request: IncomingMessage,
  maxLength: number,
  { tooLarge = 'the body is too large', notJson = 'the body is not JSON' }: ReadJsonMessages = {},
): Promise<unknown> {
  let text = ''
  for await (const chunk of request) {
    text += chunk
    if (text.length > maxLength) throw new HttpError(413, tooLarge)
  }
  try {
    return JSON.parse(text)
  } catch {
    throw new HttpError(400, notJson)
  }
}
