import { connect } from 'node:net'
import t from 'tap'
import { buildTestApp, readLog, startServer, waitForLogLine } from './helper.js'

/** Sends raw bytes and collects what the server answers until it closes. */
function raw (port: number, chunks: string[], gapMs = 0): Promise<{ text: string, elapsedMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setEncoding('latin1').on('data', (chunk: string) => { text += chunk })
    socket.on('close', () => resolve({ text, elapsedMs: Date.now() - started }))
    socket.on('error', reject)
    let index = 0
    const sendNext = () => {
      if (socket.destroyed || index >= chunks.length) return
      socket.write(chunks[index++])
      if (gapMs > 0) setTimeout(sendNext, gapMs)
      else sendNext()
    }
    socket.on('connect', sendNext)
  })
}

const trickledBody = JSON.stringify({ companionConfig: { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'friend' } })
const trickledHead = (path: string) =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${trickledBody.length}\r\n\r\n`

t.test('a body that trickles in slower than REQUEST_TIMEOUT_MS gets 408, its connection closed and its log line', async (t) => {
  // SLOW_DOWN_MAX_DELAY_MS 0 puts Node's own backstop as close as it gets
  // (3 s): the body timer must still answer, every time.
  const { app, port } = await startServer(t, { REQUEST_TIMEOUT_MS: 1000, SLOW_DOWN_DELAY_MS: 0, SLOW_DOWN_MAX_DELAY_MS: 0 })
  // One byte every 300 ms: the whole body would take ~30 s.
  const { text, elapsedMs } = await raw(port, [trickledHead('/api/ai-companion/initialize'), ...trickledBody], 300)
  t.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/)
  t.match(text, /\r\nconnection: close\r\n/i)
  t.match(text, /\{"error":"The request body did not arrive within 1000 ms","code":"REQUEST_TIMEOUT","statusCode":408\}$/)
  t.ok(elapsedMs >= 1000, `not before the timeout (${elapsedMs} ms)`)
  t.ok(elapsedMs < 4000, `within about a second of it (${elapsedMs} ms)`)
  const line = await waitForLogLine(app.config.LOG_DIR, 'requests', (entry) => entry.status === 408)
  t.match(line, { msg: 'request completed', method: 'POST', path: '/api/ai-companion/initialize', status: 408 })
})

t.test("a request held before its body is read is cut by Node's backstop, one check after the body timer's latest moment", async (t) => {
  const { port } = await startServer(t, { REQUEST_TIMEOUT_MS: 1000, SLOW_DOWN_DELAY_MS: 0, SLOW_DOWN_MAX_DELAY_MS: 0 }, (app) => {
    // A hook that never finishes: the body timer (preParsing) never starts.
    app.post('/test/held', { onRequest: (_request, _reply, _done) => undefined }, async () => 'never')
  })
  const { text, elapsedMs } = await raw(port, [trickledHead('/test/held'), ...trickledBody], 300)
  t.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n[^]*\r\n\r\n\{"error":"The request did not arrive in time","code":"REQUEST_TIMEOUT","statusCode":408\}$/)
  // The headers took no time, but their timeout (capped at REQUEST_TIMEOUT_MS) counts in full.
  t.ok(elapsedMs >= 3000, `not before HEADERS_TIMEOUT_MS + SLOW_DOWN_MAX_DELAY_MS + REQUEST_TIMEOUT_MS + 1 s (${elapsedMs} ms)`)
  t.ok(elapsedMs < 5500, `on the next check or the one after (${elapsedMs} ms)`)
})

t.test('a malformed request (a control character in a header) gets 400 in the SPEC §2 shape', async (t) => {
  const { port } = await startServer(t)
  const { text } = await raw(port, ['GET /health/live HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\u001b[31m\r\n\r\n'])
  t.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(text, /\r\n\r\n\{"error":"Malformed HTTP request","code":"BAD_REQUEST","statusCode":400\}$/)
})

t.test('logged values cannot forge lines or fields', async (t) => {
  const { app, port } = await startServer(t)
  const forged = '{"level":"fatal","msg":"forged"}'
  const { text } = await raw(port, [
    `GET /health/live?level=fatal&msg=forged HTTP/1.1\r\nHost: x\r\nUser-Agent: probe ${forged}\r\nConnection: keep-alive\r\n\r\n`,
    `GET /x%0D%0A${encodeURIComponent(forged)} HTTP/1.1\r\nHost: x\r\nUser-Agent: second\r\nConnection: close\r\n\r\n`
  ])
  t.match(text, /^HTTP\/1\.1 200 OK/)
  t.match(text, /HTTP\/1\.1 404 Not Found/)

  await waitForLogLine(app.config.LOG_DIR, 'requests', (line) => line.userAgent === 'second')
  const lines = await readLog(app.config.LOG_DIR, 'requests')
  t.equal(lines.length, 2, 'exactly one line per request: nothing forged a second one')
  t.match(lines[0], { level: 'info', msg: 'request completed', path: '/health/live', status: 200 })
  t.equal(lines[0].userAgent, `probe ${forged}`, 'a JSON-looking value stays a string inside its field')
  t.match(lines[1], { level: 'info', msg: 'request completed', status: 404 })
  t.equal(lines[1].path, `/x%0D%0A${encodeURIComponent(forged)}`, 'the path is logged as sent, still encoded: no CR/LF')
})

const persona = { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'friend' }

t.test('a slow-down delay longer than REQUEST_TIMEOUT_MS does not count against the body', async (t) => {
  const { url } = await startServer(t, { REQUEST_TIMEOUT_MS: 1000, SLOW_DOWN_AFTER: 0, SLOW_DOWN_DELAY_MS: 1500, SLOW_DOWN_MAX_DELAY_MS: 1500 })
  const started = Date.now()
  const response = await fetch(`${url}/api/ai-companion/initialize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ companionConfig: persona })
  })
  t.equal(response.status, 200)
  t.ok(Date.now() - started >= 1400, 'it was delayed')
  t.equal((await fetch(`${url}/health/live`)).status, 200, 'the process is alive')
})

t.test('an answer sent before the body was read closes the connection; a read body keeps it', async (t) => {
  const { port } = await startServer(t, { REQUEST_TIMEOUT_MS: 1000 })
  // 415 before a single body byte is read; the client would trickle 100 bytes.
  const { text, elapsedMs } = await raw(port, ['POST /api/ai-companion/initialize HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], 300)
  t.match(text, /^HTTP\/1\.1 415 Unsupported Media Type\r\n/)
  t.match(text, /\r\nconnection: close\r\n/i)
  t.ok(elapsedMs < 1500, `closed at once, not after the whole trickle (${elapsedMs} ms)`)

  const body = JSON.stringify({ companionConfig: persona })
  const { text: kept } = await raw(port, [
    `POST /api/ai-companion/initialize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    'GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  ])
  t.match(kept, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(kept, /\r\nconnection: keep-alive\r\n/i, 'a fully read body keeps the connection alive')
  t.equal(kept.match(/HTTP\/1\.1 200 OK/g)?.length, 2, 'the next request on it is served')
})

t.test('wrong STATS_TOKEN guesses count against the rate limit', async (t) => {
  const app = await buildTestApp(t, { STATS_TOKEN: 'right-token', RATE_LIMIT_MAX: 3 })
  const guess = () => app.inject({ url: '/api/stats', headers: { authorization: 'Bearer wrong-guess' } })
  for (let i = 0; i < 3; i++) t.equal((await guess()).statusCode, 401, `guess ${i + 1} is refused as unauthorised`)
  const limited = await guess()
  t.equal(limited.statusCode, 429, 'the fourth guess is rate-limited')
  t.equal(limited.json().code, 'RATE_LIMITED')
})

t.test('HTTP/1.1 without Host and an unsupported Expect get the SPEC §2 shape with the security headers', async (t) => {
  const { port } = await startServer(t)
  const { text: noHost } = await raw(port, ['GET /health/live HTTP/1.1\r\nUser-Agent: x\r\n\r\n'])
  t.match(noHost, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(noHost, /\r\ncontent-security-policy: default-src 'self'/i)
  t.match(noHost, /\r\nx-content-type-options: nosniff\r\n/i)
  t.match(noHost, /\r\nconnection: close\r\n/i)
  t.match(noHost, /\r\n\r\n\{"error":"An HTTP\/1\.1 request needs a Host header","code":"BAD_REQUEST","statusCode":400\}$/)
  const { text: http10 } = await raw(port, ['GET /health/live HTTP/1.0\r\n\r\n'])
  t.match(http10, /^HTTP\/1\.1 200 OK\r\n/, 'HTTP/1.0 needs no Host')

  const { text: expect } = await raw(port, ['POST /api/ai-companion/initialize HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'])
  t.match(expect, /^HTTP\/1\.1 417 Expectation Failed\r\n/)
  t.match(expect, /\r\ncontent-security-policy: default-src 'self'/i)
  t.match(expect, /\r\n\r\n\{"error":"Only \\"Expect: 100-continue\\" is supported","code":"EXPECTATION_FAILED","statusCode":417\}$/)

  const { text: malformed } = await raw(port, ['GET /health/live HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\u001b[31m\r\n\r\n'])
  t.match(malformed, /\r\nx-content-type-options: nosniff\r\n/i, 'parser-level refusals carry the security headers too')
})

t.test('request smuggling shapes are refused with 400: CL+TE, duplicate Content-Length, obs-fold', async (t) => {
  const { port } = await startServer(t)
  const shapes = {
    'CL+TE': 'POST /api/ai-companion/initialize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n',
    'duplicate CL': 'POST /api/ai-companion/initialize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}',
    'obs-fold': 'GET /health/live HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n'
  }
  for (const [shape, request] of Object.entries(shapes)) {
    const { text } = await raw(port, [request])
    t.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/, shape)
    t.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, `${shape}: one answer, nothing smuggled behind it`)
  }
})

t.test('deep JSON nesting and nested __proto__ are refused with 400, never a crash', async (t) => {
  const { url } = await startServer(t)
  const post = (body: string) => fetch(`${url}/api/ai-companion/initialize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  const deep = await post('['.repeat(20000) + ']'.repeat(20000))
  t.equal(deep.status, 400)
  t.match(await deep.json(), { statusCode: 400 })
  const poisoned = await post(JSON.stringify({ companionConfig: { name: 'A', personality: 'p', identity: 'i', role: 'r', nested: { deeper: JSON.parse('{"__proto__":{"polluted":true}}') } } }).replace('"deeper":{}', '"deeper":{"__proto__":{"polluted":true}}'))
  t.same(await poisoned.json(), { error: 'Request body contains a forbidden __proto__ or constructor key', code: 'INVALID_JSON', statusCode: 400 })
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.equal((await fetch(`${url}/health/live`)).status, 200)
})
