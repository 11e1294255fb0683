import { once } from 'node:events'
import { connect as tcpConnect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { WebSocket } from 'ws'
import { startServer, until, waitForLogLine } from './helper.js'
import { TestClient, rawExchange, refusedUpgrade, upgradeRequestLines } from './ws-client.js'

/* SPEC §3 protection: Origin, caps, message rate, payload size, UTF-8, slow readers, heartbeat, absurd headers. */

t.test('a disallowed Origin is refused with 403 before upgrading; no Origin and allowed ones connect', async (t) => {
  const { url } = await startServer(t)
  const refused = await refusedUpgrade(t, url, { origin: 'https://evil.example' })
  t.equal(refused.statusCode, 403)
  t.same(refused.body, { error: 'This Origin may not open a WebSocket connection', code: 'FORBIDDEN_ORIGIN', statusCode: 403 })
  t.equal(refused.headers['access-control-allow-origin'], undefined)

  t.match((await TestClient.connect(t, url)).userId, /^[0-9a-f-]{36}$/, 'no Origin (non-browser client)')
  t.match((await TestClient.connect(t, url, { origin: 'http://localhost:5173' })).userId, /^[0-9a-f-]{36}$/, 'the default CORS_ORIGIN')
  t.match((await TestClient.connect(t, url, { origin: 'http://127.0.0.1:3000' })).userId, /^[0-9a-f-]{36}$/, 'a dev origin in development')
})

t.test('in production only CORS_ORIGIN may connect from a browser', async (t) => {
  const { url } = await startServer(t, { NODE_ENV: 'production', CORS_ORIGIN: 'https://app.example.com' })
  t.equal((await refusedUpgrade(t, url, { origin: 'http://localhost:5173' })).statusCode, 403)
  t.match((await TestClient.connect(t, url, { origin: 'https://app.example.com' })).userId, /^[0-9a-f-]{36}$/)
})

t.test('a plain GET /ws is told to upgrade (426, JSON)', async (t) => {
  const { app } = await startServer(t)
  const response = await app.inject({ method: 'GET', url: '/ws' })
  t.equal(response.statusCode, 426)
  t.same(response.json(), { error: 'GET /ws expects a WebSocket upgrade request', code: 'UPGRADE_REQUIRED', statusCode: 426 })
})

/** Retries until the server has seen a close (its close event may come after the client's). */
async function eventually (connect: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await connect()
      return
    } catch (error) {
      if (attempt === 50) throw error
      await sleep(20)
    }
  }
}

t.test('WS_MAX_CONNECTIONS: 503 before upgrading, a slot frees when a connection closes; counts reach /api/stats', async (t) => {
  const { app, url } = await startServer(t, { WS_MAX_CONNECTIONS: 2 })
  const a = await TestClient.connect(t, url)
  await TestClient.connect(t, url)
  const refused = await refusedUpgrade(t, url)
  t.equal(refused.statusCode, 503)
  t.same(refused.body, { error: 'This server has too many WebSocket connections, retry later', code: 'TOO_MANY_CONNECTIONS', statusCode: 503 })
  t.match((await app.inject({ method: 'GET', url: '/api/stats' })).json().connections, { current: 2, peak: 2 })

  a.ws.close()
  await a.closed
  await eventually(() => TestClient.connect(t, url))
  t.match((await app.inject({ method: 'GET', url: '/api/stats' })).json().connections, { current: 2, peak: 2 })
})

t.test('WS_MAX_CONNECTIONS_PER_IP: 429 before upgrading', async (t) => {
  const { url } = await startServer(t, { WS_MAX_CONNECTIONS_PER_IP: 1 })
  await TestClient.connect(t, url)
  const refused = await refusedUpgrade(t, url)
  t.equal(refused.statusCode, 429)
  t.same(refused.body, { error: 'Too many WebSocket connections from this address (at most 1)', code: 'TOO_MANY_CONNECTIONS_FROM_IP', statusCode: 429 })
})

t.test('message rate (defaults 30 per 10 s): RATE_LIMITED past the rate, closed with 1008 past twice the rate', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  for (let i = 1; i <= 61; i++) a.send('leave-session', { sessionId: 'x' }, `f${i}`)
  const answers = await a.take(60)
  t.same(answers.slice(0, 30).map((e) => [e.data.code, e.data.id]), Array.from({ length: 30 }, (_, i) => ['NOT_IN_SESSION', `f${i + 1}`]))
  t.same(answers[30], { event: 'error', data: { message: 'Too many requests, retry after 10 s', code: 'RATE_LIMITED', id: 'f31' } })
  t.same(answers.slice(30).map((e) => [e.data.code, e.data.id]), Array.from({ length: 30 }, (_, i) => ['RATE_LIMITED', `f${i + 31}`]))
  t.same(await a.closed, { code: 1008, reason: 'message rate exceeded' })
})

t.test('the message window resets', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 2, WS_MESSAGE_WINDOW_MS: 300 })
  const a = await TestClient.connect(t, url)
  const codes = async () => (await a.take(3)).map((e) => e.data.code)
  for (let i = 0; i < 3; i++) a.send('leave-session', { sessionId: 'x' })
  t.same(await codes(), ['NOT_IN_SESSION', 'NOT_IN_SESSION', 'RATE_LIMITED'])
  await sleep(350)
  for (let i = 0; i < 3; i++) a.send('leave-session', { sessionId: 'x' })
  t.same(await codes(), ['NOT_IN_SESSION', 'NOT_IN_SESSION', 'RATE_LIMITED'])
  t.equal(a.ws.readyState, WebSocket.OPEN)
})

t.test('WS_MAX_PAYLOAD (default 16384): a frame of that size is handled, one byte more closes with 1009 and is logged', async (t) => {
  const { app, url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const frame = (size: number) => {
    const base = JSON.stringify({ event: 'leave-session', data: { sessionId: 'x', pad: '' }, id: 'big' })
    return base.replace('"pad":""', `"pad":"${'p'.repeat(size - base.length)}"`)
  }
  t.equal(Buffer.byteLength(frame(16384)), 16384)
  a.ws.send(frame(16384))
  t.match(await a.next(), { event: 'error', data: { code: 'NOT_IN_SESSION', id: 'big' } })
  a.ws.send(frame(16385))
  t.equal((await a.closed).code, 1009)
  const line = await waitForLogLine(app.config.LOG_DIR, 'errors', (l) => l.msg === 'websocket protocol error')
  t.match(line, {
    level: 'warn',
    route: '/ws',
    method: 'GET',
    ip: '127.0.0.1',
    userId: a.userId,
    code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
    errType: 'RangeError',
    errMessage: 'Max payload size exceeded'
  })
  t.equal(line.err, undefined, 'the client\'s error: a short line, no stack')
})

t.test('invalid UTF-8 closes with 1007', async (t) => {
  const { app, url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  a.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
  t.equal((await a.closed).code, 1007)
  const line = await waitForLogLine(app.config.LOG_DIR, 'errors', (l) => l.code === 'WS_ERR_INVALID_UTF8')
  t.match(line, {
    level: 'warn',
    msg: 'websocket protocol error',
    route: '/ws',
    method: 'GET',
    ip: '127.0.0.1',
    userId: a.userId,
    errType: 'Error',
    errMessage: 'Invalid WebSocket frame: invalid UTF-8 sequence'
  })
})

t.test('heartbeat: a peer that does not answer pings is terminated; one that does stays', async (t) => {
  const { url } = await startServer(t, { WS_PING_INTERVAL_MS: 100 })
  const silent = await TestClient.connect(t, url, { autoPong: false })
  const live = await TestClient.connect(t, url)
  let pings = 0
  live.ws.on('ping', () => pings++)
  let closeCode = 0
  silent.closed.then(({ code }) => { closeCode = code }, () => undefined)
  await until(() => closeCode !== 0, 10_000, 'the silent peer to be terminated')
  t.equal(closeCode, 1006, 'cut without a close frame')
  await until(() => pings >= 3, 10_000, 'three pings to the live peer')
  t.equal(live.ws.readyState, WebSocket.OPEN)
  await live.join('still-here', 'Liv')
})

t.test('a slow reader is closed with 1013 once its unsent data passes WS_MAX_BUFFERED_BYTES; the others go on', async (t) => {
  const { url } = await startServer(t, { WS_MAX_BUFFERED_BYTES: 64 * 1024, WS_MESSAGE_RATE: 100000, WS_FRAME_RATE: 100000, WS_BYTE_RATE: 1 << 30 })
  let tcp: Socket | undefined
  const slow = await TestClient.connect(t, url, {
    createConnection: (options: any) => (tcp = tcpConnect(options))
  })
  const fast = await TestClient.connect(t, url)
  await slow.join('slow', 'Snail')
  await fast.join('slow', 'Hare')
  await slow.next()
  tcp?.pause() // stop reading: the kernel buffers fill, then the server's

  const text = '€'.repeat(2000) // 6000 bytes
  let acked = 0
  let left: any
  const unexpected: any[] = []
  for (let sent = 0; sent < 5000 && left === undefined; sent++) {
    fast.send('chat message', { sessionId: 'slow', text }, `m${sent}`)
    for (;;) {
      const reply = await fast.next()
      if (reply.event === 'ack' && reply.data.id === `m${sent}`) break
      if (reply.event === 'user-left') left = reply
      else unexpected.push(reply)
    }
    acked++
  }
  t.same(unexpected, [], `${acked} messages acknowledged, then the slow reader was dropped`)
  t.same(left, { event: 'user-left', data: { sessionId: 'slow', userId: slow.userId, playerName: 'Snail' } })

  tcp?.resume()
  t.same(await slow.closed, { code: 1013, reason: 'too much unsent data: read faster' })
  fast.send('chat message', { sessionId: 'slow', text: 'alone now' }, 'last')
  t.same(await fast.next(), { event: 'ack', data: { id: 'last', seq: acked + 1 } })
})

t.test('an upgrade request with thousands of headers is refused and the server carries on', async (t) => {
  const { port, url } = await startServer(t)
  const [first, ...rest] = upgradeRequestLines(port)
  const key = rest.pop() as string
  const flood = (header: (i: number) => string, count: number) =>
    [first, ...rest, ...Array.from({ length: count }, (_, i) => header(i)), key].join('\r\n') + '\r\n\r\n'

  // Past Node's 2000-header limit (but within its 16 KiB size limit) the key
  // is dropped: ws (≥ 8.17.1) answers 400 instead of crashing (CVE-2024-37890).
  const dropped = await rawExchange(t, port, flood(() => 'x:', 2500))
  await dropped.ended
  t.match(dropped.received().toString(), /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nMissing or invalid Sec-WebSocket-Key header$/)

  // Past Node's header size limit the request is refused by the HTTP parser.
  const tooBig = await rawExchange(t, port, flood((i) => `x-filler-${i}: y`, 5000))
  await tooBig.ended
  t.match(tooBig.received().toString(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)

  const after = await TestClient.connect(t, url)
  await after.join('survived', 'Sam')
  const live = await fetch(`${url}/health/live`)
  t.equal(live.status, 200)
})

t.test('nothing is lost when many clients connect at once', async (t) => {
  const { url } = await startServer(t)
  const clients = await Promise.all(Array.from({ length: 40 }, () => TestClient.connect(t, url)))
  // All at once, but in a known order within each pair: the even client first,
  // so it is the one told that its partner joined.
  const join = (client: TestClient, i: number) => client.join(`pair-${i >> 1}`, `P${i}`)
  await Promise.all(clients.map((client, i) => i % 2 === 0 ? join(client, i) : undefined))
  await Promise.all(clients.map((client, i) => i % 2 === 1 ? join(client, i) : undefined))
  for (let i = 0; i < clients.length; i += 2) t.equal((await clients[i].next()).event, 'user-joined') // partner joined
  for (let i = 0; i < clients.length; i += 2) clients[i].send('chat message', { sessionId: `pair-${i >> 1}`, text: `to ${i + 1}` })
  for (let i = 1; i < clients.length; i += 2) t.equal((await clients[i].next()).data.text, `to ${i}`)
  await Promise.all(clients.map(async (client) => {
    client.ws.close()
    await once(client.ws, 'close')
  }))
})
