// What the `ws` baselines share: a server on /ws that gives each connection
// a userId and a `connected` frame, hands each parsed frame on, and when the
// connection closes, leaves the sessions it joined.
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { onSignal, ready } from './common.mjs'

export const encode = (event, data) => JSON.stringify({ event, data })

/**
 * `onFrame(client, frame)`, where `client` is `{ socket, userId, joined }` and
 * `joined` maps the connection's sessions to its player name;
 * `onLeave(sessionId, userId)` on close; `onClose()` before the server stops.
 */
export function serveWs ({ onFrame, onLeave, onClose = () => undefined }) {
  const server = createServer()
  const wss = new WebSocketServer({ server, path: '/ws' })
  wss.on('connection', (socket) => {
    const client = { socket, userId: randomUUID(), joined: new Map() }
    socket.send(encode('connected', { userId: client.userId }))
    socket.on('message', (raw) => onFrame(client, JSON.parse(raw)))
    socket.on('close', () => { for (const sessionId of client.joined.keys()) onLeave(sessionId, client.userId) })
  })
  server.listen(0, '127.0.0.1', () => ready(server.address().port))
  onSignal(async () => {
    await onClose()
    await new Promise((resolve) => { for (const client of wss.clients) client.terminate(); server.close(resolve) })
  })
}
