import { connect } from 'node:net'

/**
 * Sends one inline command over a fresh TCP connection and returns the first reply (simple string,
 * integer or bulk string; RESP errors reject). Used for readiness polling, where a full ioredis client
 * would add reconnect loops and unhandled-error noise.
 */
export function rawCommand(host: string, port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0)
    const socket = connect({ host, port })
    const finish = (error: Error | undefined, value?: string) => {
      socket.destroy()
      if (error) reject(error)
      else resolve(value ?? '')
    }
    socket.setTimeout(timeoutMs, () => finish(new Error(`${command}: no reply within ${timeoutMs} ms`)))
    socket.once('error', (error) => finish(error))
    socket.once('close', () => finish(new Error(`${command}: connection closed before a reply`)))
    socket.once('connect', () => socket.write(`${command}\r\n`))
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      const lineEnd = buffer.indexOf('\r\n')
      if (lineEnd === -1) return
      const type = String.fromCharCode(buffer[0] ?? 0)
      const line = buffer.subarray(1, lineEnd).toString()
      if (type === '+' || type === ':') return finish(undefined, line)
      if (type === '-') return finish(new Error(line))
      if (type !== '$') return finish(new Error(`${command}: unsupported reply type ${JSON.stringify(type)}`))
      const length = Number(line)
      if (length < 0) return finish(undefined, '')
      const start = lineEnd + 2
      if (buffer.length < start + length) return
      finish(undefined, buffer.subarray(start, start + length).toString())
    })
  })
}

/** Reads `process_id` from INFO, so a caller can tell its own server from another one on the same port. */
export async function redisProcessId(host: string, port: number, timeoutMs = 1000): Promise<number> {
  const info = await rawCommand(host, port, 'INFO server', timeoutMs)
  const match = /^process_id:(\d+)/m.exec(info)
  if (!match?.[1]) throw new Error('INFO server did not report a process_id')
  return Number(match[1])
}
