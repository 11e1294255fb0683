import { once } from 'node:events'
import t from 'tap'
import { WebSocket } from 'ws'
import { startServer, until } from './helper.js'
import { TestClient, clientFrame, rawExchange, serverFrames, upgradeRequestLines, wsUrl } from './ws-client.js'

/*
 * Frame-level abuse (issue 15, item 2): fragments per message, frames and
 * bytes per connection and window; ping floods; no permessage-deflate.
 */

const upgrade = (port: number) => upgradeRequestLines(port).join('\r\n') + '\r\n\r\n'

/** `text` as a first frame and continuations of `size` bytes each. */
function fragmented (text: string, size: number): Buffer {
  const parts: Buffer[] = []
  for (let offset = 0; offset < text.length; offset += size) {
    const last = offset + size >= text.length
    parts.push(clientFrame(text.slice(offset, offset + size), offset === 0 ? 0x1 : 0x0, last))
  }
  return Buffer.concat(parts)
}

t.test('a message in thousands of one-byte fragments is closed with 1008 at once; /health stays fast', async (t) => {
  const { port, url } = await startServer(t)
  const message = JSON.stringify({ event: 'leave-session', data: { sessionId: 'x', pad: 'p'.repeat(15000) } })
  const started = Date.now()
  const attack = await rawExchange(t, port, Buffer.concat([Buffer.from(upgrade(port)), fragmented(message, 1)]))
  const probeStarted = Date.now()
  const live = await fetch(`${url}/health/live`)
  const probeMs = Date.now() - probeStarted
  await attack.ended
  const elapsed = Date.now() - started
  const { texts, closeCode } = serverFrames(attack.received())
  t.equal(closeCode, 1008)
  t.match(attack.received().toString('latin1'), /too many fragments in one message/)
  t.same(texts.map((text) => JSON.parse(text).event), ['connected'], 'nothing of the message was handled')
  t.ok(elapsed < 3000, `closed within ${elapsed} ms`)
  t.equal(live.status, 200)
  t.ok(probeMs < 2000, `a probe meanwhile took ${probeMs} ms`)
})

t.test('a message in WS_MAX_FRAGMENTS fragments is handled; one more fragment closes', async (t) => {
  const { port } = await startServer(t, { WS_MAX_FRAGMENTS: 4 })
  const message = JSON.stringify({ event: 'leave-session', data: { sessionId: 'x' }, id: 'f' })
  const size = Math.ceil(message.length / 4)
  const ok = await rawExchange(t, port, Buffer.concat([Buffer.from(upgrade(port)), fragmented(message, size)]))
  await until(() => serverFrames(ok.received()).texts.length === 2, 3000, 'the answer')
  t.same(serverFrames(ok.received()).texts.slice(1).map((text) => JSON.parse(text)),
    [{ event: 'error', data: { message: 'Join session x before sending to it', code: 'NOT_IN_SESSION', id: 'f' } }])

  const over = await rawExchange(t, port, Buffer.concat([Buffer.from(upgrade(port)), fragmented(message, Math.ceil(message.length / 5))]))
  await over.ended
  t.equal(serverFrames(over.received()).closeCode, 1008)
})

t.test('WS_FRAME_RATE: a ping flood is closed with 1008; the server carries on', async (t) => {
  const { url } = await startServer(t, { WS_FRAME_RATE: 50 })
  const flooder = await TestClient.connect(t, url)
  for (let i = 0; i < 200; i++) flooder.ws.ping()
  t.same(await flooder.closed, { code: 1008, reason: 'frame rate exceeded' })
  const other = await TestClient.connect(t, url)
  await other.join('calm', 'Cal')
})

t.test('frames are counted per window: WS_FRAME_RATE frames in each window are fine', async (t) => {
  const { url } = await startServer(t, { WS_FRAME_RATE: 20, WS_MESSAGE_WINDOW_MS: 300 })
  const client = await TestClient.connect(t, url)
  for (let round = 0; round < 3; round++) {
    let pongs = 0
    const onPong = () => { pongs++ }
    client.ws.on('pong', onPong)
    for (let i = 0; i < 15; i++) client.ws.ping()
    await until(() => pongs === 15, 3000, 'the pongs')
    client.ws.off('pong', onPong)
    await new Promise((resolve) => setTimeout(resolve, 350))
  }
  t.equal(client.ws.readyState, WebSocket.OPEN)
})

t.test('WS_BYTE_RATE: more bytes in a window than the budget closes with 1008', async (t) => {
  const { url } = await startServer(t, { WS_BYTE_RATE: 4096, WS_MESSAGE_RATE: 1000 })
  const client = await TestClient.connect(t, url)
  const frame = JSON.stringify({ event: 'leave-session', data: { sessionId: 'x', pad: 'p'.repeat(900) } })
  for (let i = 0; i < 6; i++) client.ws.send(frame)
  t.same(await client.closed, { code: 1008, reason: 'byte rate exceeded' })
})

t.test('permessage-deflate is never negotiated', async (t) => {
  const { url } = await startServer(t)
  const ws = new WebSocket(wsUrl(url), { perMessageDeflate: true })
  t.teardown(() => ws.terminate())
  const upgraded = once(ws, 'upgrade')
  await once(ws, 'open')
  const [response] = await upgraded
  t.equal(response.headers['sec-websocket-extensions'], undefined)
  t.equal(ws.extensions, '')
})
