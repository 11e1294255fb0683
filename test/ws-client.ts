import { once } from 'node:events'
import { connect as tcpConnect, type Socket } from 'node:net'
import { WebSocket, type ClientOptions } from 'ws'

/*
 * A small WebSocket test client: real `ws` clients (or a raw TCP socket where
 * the test needs bytes ws would never send), with the received envelopes
 * queued in order so a test can assert exactly what arrived, and when.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface Envelope { event: string, data: any }
export interface Closed { code: number, reason: string }

export const wsUrl = (httpUrl: string) => `${httpUrl.replace(/^http/, 'ws')}/ws`

export class TestClient {
  readonly ws: WebSocket
  readonly closed: Promise<Closed>
  /** From the `connected` event. */
  userId = ''
  private readonly received: Envelope[] = []
  private waiter: (() => void) | undefined

  constructor (ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data, isBinary) => {
      this.received.push(isBinary ? { event: '<binary>', data } : JSON.parse(data.toString()))
      this.waiter?.()
    })
    this.closed = once(ws, 'close').then(([code, reason]) => ({ code, reason: String(reason) }))
  }

  /** Opens a connection and reads its `connected` event. */
  static async connect (t: Test, httpUrl: string, options: ClientOptions = {}): Promise<TestClient> {
    const client = new TestClient(new WebSocket(wsUrl(httpUrl), options))
    t.teardown(() => client.ws.terminate())
    await once(client.ws, 'open')
    const connected = await client.next()
    if (connected.event !== 'connected') throw new Error(`expected connected, got ${connected.event}`)
    client.userId = connected.data.userId
    return client
  }

  send (event: string, data: unknown, id?: string): void {
    this.ws.send(JSON.stringify(id === undefined ? { event, data } : { event, data, id }))
  }

  /** The next envelope received, in order. */
  async next (timeoutMs = 3000): Promise<Envelope> {
    const deadline = Date.now() + timeoutMs
    while (this.received.length === 0) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiter = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.waiter = undefined
    }
    return this.received.shift() as Envelope
  }

  /** The next `count` envelopes. */
  async take (count: number, timeoutMs?: number): Promise<Envelope[]> {
    const envelopes: Envelope[] = []
    for (let i = 0; i < count; i++) envelopes.push(await this.next(timeoutMs))
    return envelopes
  }

  /** Envelopes received but not read yet. */
  get pending (): number { return this.received.length }

  /**
   * Joins a session and reads `session-joined` and its own `user-joined`;
   * returns `session-joined`'s data. Frames between the two (held while
   * the join waited; across instances, others' presence, which has no
   * order) stay queued, in order.
   */
  async join (sessionId: string, playerName?: string, timeoutMs?: number): Promise<any> {
    this.send('join-session', playerName === undefined ? { sessionId } : { sessionId, playerName })
    const joined = await this.next(timeoutMs)
    if (joined.event !== 'session-joined') throw new Error(`join failed: ${JSON.stringify(joined)}`)
    const others: Envelope[] = []
    for (;;) {
      const frame = await this.next(timeoutMs)
      if (frame.event === 'user-joined' && frame.data.userId === joined.data.userId) break
      others.push(frame)
    }
    this.received.unshift(...others)
    return joined.data
  }
}

export interface Refusal { statusCode: number, headers: Record<string, unknown>, body: any }

/** An upgrade the server refuses: its HTTP status, headers and JSON body. */
export async function refusedUpgrade (t: Test, httpUrl: string, options: ClientOptions = {}): Promise<Refusal> {
  const ws = new WebSocket(wsUrl(httpUrl), options)
  t.teardown(() => ws.terminate())
  ws.on('error', () => {})
  const [, response] = await once(ws, 'unexpected-response')
  let text = ''
  for await (const chunk of response) text += chunk
  return { statusCode: response.statusCode, headers: response.headers, body: JSON.parse(text) }
}

/** A client frame (masked, as RFC 6455 requires of clients), for raw sockets; `fin: false` for all but a message's last fragment. */
export function clientFrame (payload: string | Buffer, opcode = 0x1, fin = true): Buffer {
  const body = Buffer.from(payload)
  const mask = Buffer.from([1, 2, 3, 4])
  const lengthBytes = body.length < 126 ? 0 : body.length < 65536 ? 2 : 8
  const header = Buffer.alloc(2 + lengthBytes)
  header[0] = (fin ? 0x80 : 0) | opcode
  if (lengthBytes === 0) header[1] = 0x80 | body.length
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126
    header.writeUInt16BE(body.length, 2)
  } else {
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(BigInt(body.length), 2)
  }
  return Buffer.concat([header, mask, body.map((byte, i) => byte ^ mask[i % 4])])
}

/** Server frames (unmasked) in `bytes` after the HTTP response: text payloads and the close code. */
export function serverFrames (bytes: Buffer): { texts: string[], closeCode?: number } {
  let offset = bytes.indexOf('\r\n\r\n') + 4
  const texts: string[] = []
  let closeCode: number | undefined
  while (offset + 2 <= bytes.length) {
    const opcode = bytes[offset] & 0x0f
    let length = bytes[offset + 1] & 0x7f
    offset += 2
    if (length === 126) {
      length = bytes.readUInt16BE(offset)
      offset += 2
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(offset))
      offset += 8
    }
    const payload = bytes.subarray(offset, offset + length)
    offset += length
    if (opcode === 0x1) texts.push(payload.toString())
    if (opcode === 0x8) closeCode = payload.readUInt16BE(0)
  }
  return { texts, closeCode }
}

/** A raw TCP connection that writes `request` (and whatever follows it) in one go and collects every byte back. */
export async function rawExchange (t: Test, port: number, request: Buffer | string): Promise<{ socket: Socket, received: () => Buffer, ended: Promise<void> }> {
  const socket = tcpConnect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  const chunks: Buffer[] = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.on('error', () => {})
  const ended = once(socket, 'close').then(() => undefined)
  await once(socket, 'connect')
  socket.write(request)
  return { socket, received: () => Buffer.concat(chunks), ended }
}

/** The lines of an upgrade request to /ws, before the blank line. */
export function upgradeRequestLines (port: number): string[] {
  return [
    'GET /ws HTTP/1.1',
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='
  ]
}
