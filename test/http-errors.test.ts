import { Type } from '@sinclair/typebox'
import { ApiError } from '@google/genai'
import { connect } from 'node:net'
import t from 'tap'
import type { App } from '../src/app.js'
import { addBoomRoute, BOOM_MESSAGE, buildTestApp, startServer, until, waitForLogLine } from './helper.js'

// Test-only routes: one that validates a JSON body, one that fails.
function echoAndBoom (app: App) {
  app.post('/test/echo', {
    schema: { body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 5 }), nested: Type.Optional(Type.Object({ count: Type.Integer() })) }) }
  }, async (request) => request.body)
  addBoomRoute(app)
  // What the Gemini SDK throws: Google's raw JSON as the message, `status` not `statusCode`.
  app.get('/test/upstream', async () => {
    throw new ApiError({ status: 400, message: '{"error":{"code":400,"message":"API key not valid: AIza-secret","status":"INVALID_ARGUMENT"}}' })
  })
}

t.test('unknown route and wrong method → 404 NOT_FOUND JSON', async (t) => {
  const app = await buildTestApp(t)
  const unknown = await app.inject({ url: '/nope?x=1' })
  t.equal(unknown.statusCode, 404)
  t.match(unknown.headers['content-type'], /application\/json/)
  t.same(unknown.json(), { error: 'Route GET /nope not found', code: 'NOT_FOUND', statusCode: 404 })
  const wrongMethod = await app.inject({ method: 'DELETE', url: '/health' })
  t.equal(wrongMethod.statusCode, 404)
  t.same(wrongMethod.json(), { error: 'Route DELETE /health not found', code: 'NOT_FOUND', statusCode: 404 })
})

t.test('bodies: 413, 415, malformed JSON, prototype pollution, validation', async (t) => {
  const app = await buildTestApp(t, { BODY_LIMIT: 1024 }, echoAndBoom)
  const post = (payload: string, contentType = 'application/json') =>
    app.inject({ method: 'POST', url: '/test/echo', payload, headers: { 'content-type': contentType } })

  const ok = await post('{"name":"Ava","extra":"ignored"}')
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { name: 'Ava' }, 'unknown fields are dropped')

  const tooLarge = await post(JSON.stringify({ name: 'x'.repeat(2000) }))
  t.equal(tooLarge.statusCode, 413)
  t.same(tooLarge.json(), { error: 'Request body is too large', code: 'PAYLOAD_TOO_LARGE', statusCode: 413 })

  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const unsupported = await post('name=Ava', type)
    t.equal(unsupported.statusCode, 415, type)
    t.same(unsupported.json(), { error: 'Request body must be application/json', code: 'UNSUPPORTED_MEDIA_TYPE', statusCode: 415 })
  }

  const malformed = await post('{"name": "Ava"')
  t.equal(malformed.statusCode, 400)
  t.same(malformed.json(), { error: 'Request body is not valid JSON', code: 'INVALID_JSON', statusCode: 400 })

  const empty = await post('')
  t.equal(empty.statusCode, 400)
  t.same(empty.json(), { error: 'Request body is empty but Content-Type is application/json', code: 'INVALID_JSON', statusCode: 400 })

  for (const payload of ['{"name":"Ava","__proto__":{"admin":true}}', '{"name":"Ava","constructor":{"prototype":{"admin":true}}}']) {
    const poisoned = await post(payload)
    t.equal(poisoned.statusCode, 400, payload)
    t.same(poisoned.json(), { error: 'Request body contains a forbidden __proto__ or constructor key', code: 'INVALID_JSON', statusCode: 400 })
  }

  const tooLong = await post('{"name":"Avalanche"}')
  t.equal(tooLong.statusCode, 400)
  t.same(tooLong.json(), { error: 'name must NOT have more than 5 characters', code: 'VALIDATION_ERROR', statusCode: 400 })
  const missing = await post('{}')
  t.same(missing.json(), { error: 'name is required', code: 'VALIDATION_ERROR', statusCode: 400 })
  const wrongType = await post('{"name":"Ava","nested":{"count":"3"}}')
  t.same(wrongType.json(), { error: 'nested.count must be integer', code: 'VALIDATION_ERROR', statusCode: 400 })
})

t.test('a 5xx shows nothing internal to the client and is logged to errors.log with context', async (t) => {
  const app = await buildTestApp(t, {}, echoAndBoom)
  const response = await app.inject({ url: '/test/boom?token=abc', headers: { 'user-agent': 'tap', authorization: 'Bearer sekrit' } })
  t.equal(response.statusCode, 500)
  t.same(response.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  t.notMatch(response.body, /secret|srv|stack/)

  const reqId = response.headers['x-request-id']
  t.type(reqId, 'string', 'the client gets the request id')
  const line = await waitForLogLine(app.config.LOG_DIR, 'errors', (l) => l.msg === 'request failed')
  t.equal(line.reqId, reqId, 'the line carries the id the client was given')
  t.match(line, {
    level: 'error',
    route: '/test/boom',
    method: 'GET',
    ip: '127.0.0.1',
    statusCode: 500,
    code: 'INTERNAL_ERROR',
    err: { type: 'Error', message: BOOM_MESSAGE, stack: /at / }
  })
  t.match(line.time, /^\d{4}-\d\d-\d\dT/)
  t.notMatch(JSON.stringify(line), /sekrit/)
})

t.test('URLs Fastify rejects before routing still get the SPEC §2 error shape', async (t) => {
  const app = await buildTestApp(t)
  const longId = await app.inject({ url: `/api/sessions/${'a'.repeat(300)}` })
  t.equal(longId.statusCode, 400)
  t.same(longId.json(), { error: 'A path parameter is longer than 256 characters', code: 'VALIDATION_ERROR', statusCode: 400 })
  const badUrl = await app.inject({ url: '/api/sessions/%E0%A4%A' })
  t.equal(badUrl.statusCode, 400)
  t.same(badUrl.json(), { error: 'The URL is not valid (malformed percent-encoding?)', code: 'BAD_URL', statusCode: 400 })
  for (const response of [longId, badUrl]) {
    t.match(response.headers['content-security-policy'], /default-src 'self'/, 'security headers are set here too')
    t.equal(response.headers['x-content-type-options'], 'nosniff')
    const line = await waitForLogLine(app.config.LOG_DIR, 'requests', (l) => l.reqId === response.headers['x-request-id'])
    t.match(line, { method: 'GET', status: 400, route: null, msg: 'request completed' }, 'and a requests.log line')
  }
})

t.test('a library error (the Gemini SDK\'s ApiError) never reaches the client as it is (SPEC §6)', async (t) => {
  const app = await buildTestApp(t, {}, echoAndBoom)
  const response = await app.inject({ url: '/test/upstream' })
  t.equal(response.statusCode, 500)
  t.same(response.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  t.notMatch(response.body, /AIza|INVALID_ARGUMENT|not valid/)
})

t.test('the server gets the configured keep-alive and request timeouts', async (t) => {
  // Neither Node's, Fastify's nor our defaults, so only the settings can explain them.
  const { app } = await startServer(t, { KEEP_ALIVE_TIMEOUT_MS: 61_234, REQUEST_TIMEOUT_MS: 23_456, SLOW_DOWN_MAX_DELAY_MS: 5_432, HEADERS_TIMEOUT_MS: 7_654 })
  t.equal(app.server.keepAliveTimeout, 61_234)
  t.equal(app.server.requestTimeout, 7_654 + 5_432 + 23_456 + 1000, "Node's backstop: after the body timer's latest moment, plus one check")
})

t.test('KEEP_ALIVE_TIMEOUT_MS closes an idle kept-alive connection, not before', async (t) => {
  const { port } = await startServer(t, { KEEP_ALIVE_TIMEOUT_MS: 1000 })
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { received += chunk })
  let closedAt = 0
  socket.on('close', () => { closedAt = Date.now() })
  socket.write('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n')
  await until(() => received.includes('{"status":"ok"}'), 5000, 'the answer')
  const idleSince = Date.now()
  t.match(received, /connection: keep-alive/i)
  // Far sooner than the 72 s default; a margin below for a timer that fires early.
  await until(() => closedAt > 0, 30_000, 'the server to close the idle connection')
  t.ok(closedAt - idleSince >= 900, `closed after ${closedAt - idleSince} ms idle`)
})
