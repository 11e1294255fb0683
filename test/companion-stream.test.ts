import { once } from 'node:events'
import t, { type Test } from 'tap'
import { blockedReply, offlineReply, unavailableReply } from '../src/services/ai/fallbacks.js'
import { aiEnv, apiError, startFakeGemini } from './fake-gemini.js'
import { ISO, persona as companionConfig, rawPost, readLog, startServer, until, waitForLogLine } from './helper.js'
import { parseEvents, postJson, SSE } from './http-client.js'

/*
 * SPEC §2.2 streaming and §4.3 "the upstream call is aborted when the client
 * goes away": a listening server, real fetch clients.
 */

const UNAVAILABLE = 'The AI companion is temporarily unavailable'

async function setup (t: Test, env: Parameters<typeof aiEnv>[1] = {}) {
  const fake = await startFakeGemini(t)
  const { app, url } = await startServer(t, aiEnv(fake, env))
  const start = await postJson(`${url}/api/ai-companion/initialize`, { companionConfig })
  const { sessionId } = await start.json() as { sessionId: string }
  return { fake, app, url, sessionId, chatUrl: `${url}/api/ai-companion/chat` }
}

t.test('SSE: a chunk event per model chunk, then done with the JSON body', async (t) => {
  const { fake, app, url, sessionId, chatUrl } = await setup(t)
  fake.script({ chunks: ['Hey', ' you', ', how was', ' your day?'] })
  const response = await postJson(chatUrl, { sessionId, message: 'hi' }, SSE)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(response.headers.get('cache-control'), 'no-cache')
  t.equal(response.headers.get('x-accel-buffering'), 'no')
  t.equal(response.headers.get('x-content-type-options'), 'nosniff', 'the security headers as on any response')
  const text = await response.text()
  t.match(text, /^event: chunk\ndata: \{"text":"Hey"\}\n\nevent: chunk\ndata: \{"text":" you"\}\n\n/, 'the exact framing')
  const events = parseEvents(text)
  t.same(events.map((event) => event.event), ['chunk', 'chunk', 'chunk', 'chunk', 'done'])
  t.same(events.slice(0, 4).map((event) => event.data), [{ text: 'Hey' }, { text: ' you' }, { text: ', how was' }, { text: ' your day?' }])
  const done = events[4].data
  t.same(Object.keys(done), ['sessionId', 'message', 'companionName', 'timestamp', 'fallback'])
  t.match(done, { sessionId, message: 'Hey you, how was your day?', companionName: 'Ava', timestamp: ISO, fallback: false })
  t.equal(fake.requests[1].stream, true, 'streamGenerateContent upstream')

  const session = await (await fetch(`${url}/api/sessions/${sessionId}`)).json() as { messageCount: number }
  t.equal(session.messageCount, 3, 'the streamed exchange is history')
  const logged = await waitForLogLine(app.config.LOG_DIR, 'requests', (line) => line.route === '/api/ai-companion/chat')
  t.match(logged, { method: 'POST', status: 200 }, 'the request log hook ran for the stream')
  t.match(await waitForLogLine(app.config.LOG_DIR, 'ai-requests', (line) => line.streamed === true),
    { operation: 'chat', result: 'ok', attempts: 1, finishReason: 'STOP' })
})

t.test('SSE with an Idempotency-Key, chunks spaced out: its outcome remembered, and no MaxListenersExceededWarning', async (t) => {
  const { fake, sessionId, chatUrl } = await setup(t)
  const warnings: string[] = []
  const onWarning = (warning: Error) => { warnings.push(`${warning.name}: ${warning.message}`) }
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  fake.script({ chunks: ['One', ' two', ' three'], chunkDelayMs: 100 })
  const response = await postJson(chatUrl, { sessionId, message: 'hi' }, { ...SSE, 'idempotency-key': 'spaced-1' })
  const events = parseEvents(await response.text())
  t.same(events.map((event) => event.event), ['chunk', 'chunk', 'chunk', 'done'])
  const replayed = await postJson(chatUrl, { sessionId, message: 'hi' }, { 'idempotency-key': 'spaced-1' })
  t.equal(replayed.headers.get('idempotent-replayed'), 'true')
  t.same(await replayed.json(), events[3].data, 'the stream\'s outcome was remembered')
  await new Promise((resolve) => setImmediate(resolve)) // warnings are emitted on the next tick
  t.same(warnings, [])
})

t.test('SSE: a failure before the first chunk is a plain 503 with Retry-After', async (t) => {
  const { fake, sessionId, chatUrl } = await setup(t)
  fake.script(apiError(503), apiError(503), apiError(503))
  const response = await postJson(chatUrl, { sessionId, message: 'hi' }, SSE)
  t.equal(response.status, 503)
  t.equal(response.headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal(response.headers.get('retry-after'), '1')
  t.same(await response.json(), {
    error: UNAVAILABLE, code: 'AI_UNAVAILABLE', statusCode: 503, fallback: true, retryAfter: 1, sessionId, message: unavailableReply(companionConfig)
  })
})

t.test('SSE: a failure mid-stream ends with an error event carrying the fallback', async (t) => {
  const { fake, url, sessionId, chatUrl } = await setup(t)
  fake.script({ chunks: ['Hey', ' there', '!'], breakAfterChunks: 1 })
  const response = await postJson(chatUrl, { sessionId, message: 'hi' }, SSE)
  t.equal(response.status, 200)
  t.same(parseEvents(await response.text()), [
    { event: 'chunk', data: { text: 'Hey' } },
    { event: 'error', data: { error: UNAVAILABLE, code: 'AI_UNAVAILABLE', message: unavailableReply(companionConfig) } }
  ])
  t.equal(fake.requests.length, 2, 'not retried after text was sent')
  const session = await (await fetch(`${url}/api/sessions/${sessionId}`)).json() as { messageCount: number }
  t.equal(session.messageCount, 2, 'the message stays, the partial reply does not')
})

t.test('SSE: a withheld reply is one chunk with the deflection, then done with blocked', async (t) => {
  const { fake, sessionId, chatUrl } = await setup(t)
  fake.script({ blockReason: 'PROHIBITED_CONTENT' })
  const events = parseEvents(await (await postJson(chatUrl, { sessionId, message: 'hi' }, SSE)).text())
  t.same(events.map((event) => event.event), ['chunk', 'done'])
  t.same(events[0].data, { text: blockedReply() })
  t.same(Object.keys(events[1].data), ['sessionId', 'message', 'companionName', 'timestamp', 'fallback', 'blocked'])
  t.match(events[1].data, { sessionId, message: blockedReply(), fallback: true, blocked: true })
})

t.test('SSE in offline mode: the canned reply as one chunk', async (t) => {
  const { url } = await startServer(t, { GEMINI_API_KEY: '' })
  const events = parseEvents(await (await postJson(`${url}/api/ai-companion/chat`, { message: 'hello!', companionConfig }, SSE)).text())
  t.same(events.map((event) => event.event), ['chunk', 'done'])
  t.same(events[0].data, { text: offlineReply(companionConfig, 'hello!') })
  t.match(events[1].data, { message: offlineReply(companionConfig, 'hello!'), fallback: true })
})

t.test('a client that goes away aborts the upstream call (JSON and SSE) and frees its slot; it is no AI failure', async (t) => {
  const { fake, app, url, sessionId, chatUrl } = await setup(t, { AI_MAX_CONCURRENCY: 1 })
  const dir = app.config.LOG_DIR

  fake.script({ hang: true })
  const waiting = rawPost(chatUrl, { sessionId, message: 'hi' })
  await fake.waitForRequests(2)
  waiting.req.destroy()
  await until(() => fake.requests[1].abandoned, 3000, 'JSON: the upstream call was aborted')
  t.ok(fake.requests[1].abandoned, 'JSON: the upstream call was aborted')
  t.match(await waitForLogLine(dir, 'ai-requests', (line) => line.errorCode === 'CLIENT_GONE'),
    { operation: 'chat', result: 'aborted', streamed: false, attempts: 1 })

  fake.script({ chunks: ['one', ' two', ' three'], chunkDelayMs: 400 })
  const streaming = rawPost(chatUrl, { sessionId, message: 'hi' }, SSE)
  const response = await streaming.response
  t.equal(response.statusCode, 200)
  const [first] = await once(response, 'data') as [Buffer]
  t.equal(first.toString(), 'event: chunk\ndata: {"text":"one"}\n\n')
  streaming.req.destroy()
  await until(() => fake.requests[2].abandoned, 3000, 'SSE: the upstream stream was aborted')
  t.ok(fake.requests[2].abandoned, 'SSE: the upstream stream was aborted')
  t.match(await waitForLogLine(dir, 'ai-requests', (line) => line.errorCode === 'CLIENT_GONE' && line.streamed === true),
    { operation: 'chat', result: 'aborted', attempts: 1 })

  fake.script({ hang: true })
  const greeting = rawPost(`${url}/api/ai-companion/initialize`, { companionConfig })
  await fake.waitForRequests(4)
  greeting.req.destroy()
  await until(() => fake.requests[3].abandoned, 3000, 'greeting: the upstream call was aborted')
  t.ok(fake.requests[3].abandoned, 'greeting: the upstream call was aborted')
  t.match(await waitForLogLine(dir, 'ai-requests', (line) => line.errorCode === 'CLIENT_GONE' && line.operation === 'greeting'),
    { result: 'aborted', streamed: false, attempts: 1 })

  const session = await (await fetch(`${url}/api/sessions/${sessionId}`)).json() as { messageCount: number }
  t.equal(session.messageCount, 1, 'nothing of the abandoned exchanges is history (only the greeting)')
  const stats = await (await fetch(`${url}/api/stats`)).json() as { ai: Record<string, unknown>, requests: Record<string, unknown>, errors: unknown }
  t.match(stats.ai, { total: 4, successful: 1, failures: 0, fallbacks: 0, failureRate: 0 }, 'aborted requests count in the total only')
  t.match(stats.requests, { serverErrors: 0 })
  t.same(stats.errors, { count: 0, recent: [] }, 'no 503 for a response nobody received')
  t.same(await readLog(dir, 'errors'), [], 'nothing in errors.log')
  t.same((await readLog(dir, 'requests')).filter((line) => line.status >= 500), [], 'no 5xx in requests.log')

  const after = await postJson(chatUrl, { sessionId, message: 'still there?' })
  t.equal(after.status, 200, 'AI_MAX_CONCURRENCY is 1: every slot was released')
  t.equal(app.ai.status().circuit, 'closed')
})
