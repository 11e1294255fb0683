import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { unavailableReply } from '../src/services/ai/fallbacks.js'
import { aiEnv, apiError, DEFAULT_REPLY, startFakeGemini } from './fake-gemini.js'
import { startServer, waitForLogLine } from './helper.js'

/*
 * SPEC §2.4 regenerate, §2.5 idempotency and one reply at a time, §2.6
 * export, through a listening server with fetch clients and the real SDK
 * against the fake Gemini.
 */

const companionConfig = { name: 'Ava', personality: 'warm, playful', identity: 'a long-distance partner', gender: 'female', role: 'girlfriend' }
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const UNAVAILABLE = 'The AI companion is temporarily unavailable'
const GREETING = 'Hi, I am Ava. What made you smile today?'
const SSE = { accept: 'text/event-stream' }
const REPLY_KEYS = ['sessionId', 'message', 'companionName', 'timestamp', 'fallback']

const errorBody = (code: string, error: string, statusCode: number, extra: Record<string, unknown> = {}) => ({ error, code, statusCode, ...extra })
const NOT_FOUND = errorBody('SESSION_NOT_FOUND', 'Session not found or expired', 404)
const BUSY = errorBody('SESSION_BUSY', 'The companion is still answering in this session; retry when the reply is done', 409, { retryAfter: 1 })
const IN_PROGRESS = errorBody('REQUEST_IN_PROGRESS', 'A request with this Idempotency-Key is still being answered', 409)
const REUSED = errorBody('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used for a request with a different body', 422)

/** `event: x\ndata: {…}\n\n` frames → [{ event, data }]. */
function parseEvents (text: string): Array<{ event: string, data: any }> {
  return text.split('\n\n').filter(Boolean).map((frame) => {
    const [eventLine, dataLine] = frame.split('\n')
    return { event: eventLine.slice(7), data: JSON.parse(dataLine.slice(6)) }
  })
}

async function setup (t: Test, env: Parameters<typeof aiEnv>[1] = {}) {
  const fake = await startFakeGemini(t)
  const { app, url } = await startServer(t, aiEnv(fake, env))
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}/api/ai-companion/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const exportOf = async (sessionId: string) => (await fetch(`${url}/api/sessions/${sessionId}/export`)).json() as Promise<any>
  /** A session whose greeting is GREETING (one upstream call). */
  const newSession = async (): Promise<string> => {
    fake.script({ text: GREETING })
    const response = await post('initialize', { companionConfig })
    t.equal(response.status, 200)
    return (await response.json() as { sessionId: string }).sessionId
  }
  return { fake, app, url, post, exportOf, newSession }
}

/** The turns the model was sent in upstream request `index`, as [role, text] pairs. */
const sent = (fake: Awaited<ReturnType<typeof startFakeGemini>>, index: number) =>
  fake.requests[index].body.contents.map((turn: any) => [turn.role, turn.parts.map((part: any) => part.text).join(' | ')])

t.test('regenerate (JSON): a new reply to the same message, the replaced one kept as an alternative', async (t) => {
  const { fake, app, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'First reply.' }, { text: 'Second reply.' }, { text: 'Third reply.' })
  t.equal((await post('chat', { sessionId, message: 'hi' })).status, 200)

  const response = await post('regenerate', { sessionId })
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'application/json; charset=utf-8')
  const body = await response.json() as Record<string, unknown>
  t.same(Object.keys(body), REPLY_KEYS, 'the body of chat')
  t.match(body, { sessionId, message: 'Second reply.', companionName: 'Ava', timestamp: ISO, fallback: false })
  t.equal(fake.requests.length, 3)
  t.same(sent(fake, 2), [['model', GREETING], ['user', 'hi']], 'the history before the message, then the message again')
  t.equal(fake.requests[2].stream, false)
  t.match(fake.requests[2].body.systemInstruction.parts[0].text, 'Task: reply to the user\'s latest message')
  const logged = await waitForLogLine(app.config.LOG_DIR, 'ai-requests', (line) => line.operation === 'regenerate')
  t.match(logged, { operation: 'regenerate', success: true, result: 'ok' }, 'logged as a regenerate')

  t.equal((await post('chat', { sessionId, message: 'and now?' })).status, 200)
  t.same(sent(fake, 3), [['model', GREETING], ['user', 'hi'], ['model', 'Second reply.'], ['user', 'and now?']],
    'the new reply replaced the old one in the context')
  const exported = await exportOf(sessionId)
  t.same(exported.messages.map((m: any) => [m.role, m.text, m.alternatives]), [
    ['model', GREETING, undefined],
    ['user', 'hi', undefined],
    ['model', 'Second reply.', ['First reply.']],
    ['user', 'and now?', undefined],
    ['model', 'Third reply.', undefined]
  ])
  t.equal(exported.messages[2].timestamp, body.timestamp, 'the turn has the time of its new reply')
})

t.test('regenerate: at most 4 alternatives per turn, oldest dropped, in the export', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script(...['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].map((text) => ({ text })))
  await post('chat', { sessionId, message: 'hi' })
  for (let i = 0; i < 5; i++) t.equal((await post('regenerate', { sessionId })).status, 200)
  const { messages } = await exportOf(sessionId)
  t.same(messages.at(-1), { role: 'model', text: 'r6', timestamp: messages.at(-1).timestamp, alternatives: ['r2', 'r3', 'r4', 'r5'] })
  t.equal(messages.length, 3, 'still one reply')
  t.equal(fake.requests.length, 7)
})

t.test('regenerate (SSE): chunks, then done with the JSON body', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'First reply.' }, { chunks: ['Second', ' reply.'] })
  await post('chat', { sessionId, message: 'hi' })
  const response = await post('regenerate', { sessionId }, SSE)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  const events = parseEvents(await response.text())
  t.same(events.map((e) => e.event), ['chunk', 'chunk', 'done'])
  t.same(events.slice(0, 2).map((e) => e.data), [{ text: 'Second' }, { text: ' reply.' }])
  t.same(Object.keys(events[2].data), REPLY_KEYS)
  t.match(events[2].data, { sessionId, message: 'Second reply.', companionName: 'Ava', timestamp: ISO, fallback: false })
  t.equal(fake.requests[2].stream, true)
  t.same(sent(fake, 2), [['model', GREETING], ['user', 'hi']])
  t.same((await exportOf(sessionId)).messages.at(-1).alternatives, ['First reply.'])
})

t.test('regenerate after a failed chat: the message the 503 kept gets its first reply', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script(apiError(503), apiError(503), apiError(503), { text: 'At last.' })
  t.equal((await post('chat', { sessionId, message: 'hi' })).status, 503)
  const response = await post('regenerate', { sessionId })
  t.equal(response.status, 200)
  t.match(await response.json(), { sessionId, message: 'At last.', fallback: false })
  t.equal(fake.requests.length, 5)
  t.same(sent(fake, 4), [['model', GREETING], ['user', 'hi']], 'the kept message, once')
  t.same((await exportOf(sessionId)).messages.map((m: any) => [m.role, m.text, m.alternatives]),
    [['model', GREETING, undefined], ['user', 'hi', undefined], ['model', 'At last.', undefined]])
})

t.test('regenerate: a failure is chat\'s 503 and leaves the previous reply', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'Kept reply.' }, apiError(503), apiError(503), apiError(503))
  await post('chat', { sessionId, message: 'hi' })
  const before = await exportOf(sessionId)
  const response = await post('regenerate', { sessionId })
  t.equal(response.status, 503)
  t.equal(response.headers.get('retry-after'), '1')
  t.same(await response.json(), errorBody('AI_UNAVAILABLE', UNAVAILABLE, 503, { fallback: true, retryAfter: 1, sessionId, message: unavailableReply(companionConfig) }))
  t.equal(fake.requests.length, 5, 'retried as chat is')
  t.same((await exportOf(sessionId)).messages, before.messages, 'nothing changed')
})

t.test('regenerate: 404, 409 NOTHING_TO_REGENERATE, 409 NOT_A_COMPANION_SESSION, 400; no upstream call', async (t) => {
  const { fake, app, post, newSession } = await setup(t)
  const sessionId = await newSession()
  await app.sessions.join('room_1', { userId: 'u1', playerName: 'Sam' }, 10)
  const cases: Array<[unknown, number, unknown]> = [
    [{ sessionId: 'unknownSession' }, 404, NOT_FOUND],
    [{ sessionId }, 409, errorBody('NOTHING_TO_REGENERATE', 'The conversation has no message of yours to answer again yet', 409)],
    [{ sessionId: 'room_1' }, 409, errorBody('NOT_A_COMPANION_SESSION', 'This is a multiplayer session, not a companion conversation', 409)],
    [{}, 400, errorBody('VALIDATION_ERROR', 'sessionId is required', 400)],
    [{ sessionId: 'no spaces' }, 400, errorBody('VALIDATION_ERROR', 'sessionId must be 1–128 characters of A–Z, a–z, 0–9, _ or -', 400)]
  ]
  for (const [body, status, expected] of cases) {
    const response = await post('regenerate', body)
    t.equal(response.status, status, JSON.stringify(body))
    t.same(await response.json(), expected)
  }
  t.equal(fake.requests.length, 1, 'only the greeting')
})

t.test('regenerate counts against the AI rate limit', async (t) => {
  const { post, newSession } = await setup(t, { AI_RATE_LIMIT_MAX: 3 })
  const sessionId = await newSession()
  t.equal((await post('chat', { sessionId, message: 'hi' })).status, 200)
  const third = await post('regenerate', { sessionId })
  t.equal(third.status, 200)
  t.equal(third.headers.get('ratelimit-remaining'), '0')
  const refused = await post('regenerate', { sessionId })
  t.equal(refused.status, 429)
  t.match(await refused.json(), { code: 'RATE_LIMITED', statusCode: 429 })
})

t.test('export: the exact body and headers; 404; 409 for multiplayer; its text in no log file', async (t) => {
  const { fake, app, url, post, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'SECRET-REPLY-1' }, { text: 'SECRET-REPLY-2' })
  const chatted = await (await post('chat', { sessionId, message: 'SECRET-MESSAGE' })).json() as { timestamp: string }
  const regenerated = await (await post('regenerate', { sessionId })).json() as { timestamp: string }
  const info = await (await fetch(`${url}/api/sessions/${sessionId}`)).json() as { createdAt: string }

  const before = Date.now()
  const response = await fetch(`${url}/api/sessions/${sessionId}/export`)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal(response.headers.get('content-disposition'), `attachment; filename="lovers-code-${sessionId}.json"`)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const body = await response.json() as any
  t.same(Object.keys(body), ['sessionId', 'kind', 'companion', 'createdAt', 'exportedAt', 'messages'])
  t.same(body, {
    sessionId,
    kind: 'companion',
    companion: companionConfig,
    createdAt: info.createdAt,
    exportedAt: body.exportedAt,
    messages: [
      { role: 'model', text: GREETING, timestamp: body.messages[0].timestamp },
      { role: 'user', text: 'SECRET-MESSAGE', timestamp: body.messages[1].timestamp },
      { role: 'model', text: 'SECRET-REPLY-2', timestamp: regenerated.timestamp, alternatives: ['SECRET-REPLY-1'] }
    ]
  })
  t.ok(Date.parse(body.exportedAt) >= before, 'exportedAt is now')
  for (const message of body.messages) t.match(message.timestamp, ISO)
  t.ok(body.messages[1].timestamp <= chatted.timestamp, 'the user turn is stamped when it arrived')

  await app.sessions.join('room_1', { userId: 'u1', playerName: 'Sam' }, 10)
  const multiplayer = await fetch(`${url}/api/sessions/room_1/export`)
  t.equal(multiplayer.status, 409)
  t.same(await multiplayer.json(), errorBody('NOT_A_COMPANION_SESSION', 'This is a multiplayer session, not a companion conversation', 409))
  const unknown = await fetch(`${url}/api/sessions/unknownSession/export`)
  t.equal(unknown.status, 404)
  t.same(await unknown.json(), { sessionId: 'unknownSession', isActive: false, participantCount: 0, ...NOT_FOUND })
  t.equal((await fetch(`${url}/api/sessions/bad%20id/export`)).status, 400)

  await app.close() // flushes every log file
  const dir = app.config.LOG_DIR
  const files = (await readdir(dir)).filter((name) => name.endsWith('.log'))
  t.ok(files.includes('requests.log'))
  const logs = (await Promise.all(files.map((name) => readFile(join(dir, name), 'utf8')))).join('\n')
  t.match(logs, `/api/sessions/${sessionId}/export`, 'the export request is in the request log')
  for (const secret of ['SECRET-MESSAGE', 'SECRET-REPLY', GREETING, 'long-distance partner']) t.notMatch(logs, secret, `"${secret}" in no log`)
})

t.test('COMPANION_HISTORY_KEPT turns are kept and exported; only AI_HISTORY_MESSAGES go to the model', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t, { AI_HISTORY_MESSAGES: 2, COMPANION_HISTORY_KEPT: 5 })
  const sessionId = await newSession()
  for (const n of [1, 2, 3]) {
    fake.script({ text: `reply ${n}` })
    await post('chat', { sessionId, message: `message ${n}` })
  }
  t.same(sent(fake, 3), [['user', 'message 2'], ['model', 'reply 2'], ['user', 'message 3']], 'the last 2 turns, then the message')
  t.same((await exportOf(sessionId)).messages.map((m: any) => m.text),
    ['reply 1', 'message 2', 'reply 2', 'message 3', 'reply 3'], 'the last 5 turns: the greeting has gone')
})

t.test('Idempotency-Key: a repeat gets the first response, calls no model, changes nothing', async (t) => {
  const { fake, url, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  const key = { 'idempotency-key': 'msg-1_A' }
  const first = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(first.status, 200)
  t.equal(first.headers.get('idempotent-replayed'), null)
  const firstBody = await first.text()
  const exported = await exportOf(sessionId)

  const repeat = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(repeat.status, 200)
  t.equal(repeat.headers.get('idempotent-replayed'), 'true')
  t.equal(repeat.headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal(await repeat.text(), firstBody, 'the same body, byte for byte')
  t.equal(fake.requests.length, 2, 'no second model call')
  t.same((await exportOf(sessionId)).messages, exported.messages, 'nothing added to the history')

  const reused = await post('chat', { sessionId, message: 'something else' }, key)
  t.equal(reused.status, 422)
  t.same(await reused.json(), REUSED)

  // Scoped per route: the same key on regenerate is another request.
  const regenerated = await post('regenerate', { sessionId }, key)
  t.equal(regenerated.status, 200)
  t.equal(regenerated.headers.get('idempotent-replayed'), null)
  const again = await post('regenerate', { sessionId }, key)
  t.equal(again.headers.get('idempotent-replayed'), 'true')
  t.same((await exportOf(sessionId)).messages.at(-1).alternatives, [DEFAULT_REPLY], 'regenerated once')
  t.equal(fake.requests.length, 3)

  const initKey = { 'idempotency-key': 'init-1' }
  const init = await post('initialize', { companionConfig }, initKey)
  const initAgain = await post('initialize', { companionConfig }, initKey)
  t.equal(initAgain.headers.get('idempotent-replayed'), 'true')
  t.same(await initAgain.json(), await init.json(), 'the same session, not a second one')
  t.equal(fake.requests.length, 4)
  const stats = await (await fetch(`${url}/api/sessions/${sessionId}`)).json() as { messageCount: number }
  t.equal(stats.messageCount, 3)
})

t.test('Idempotency-Key: a bad key is a 400 naming the header, before anything runs', async (t) => {
  const { fake, post, newSession } = await setup(t)
  const sessionId = await newSession()
  const MESSAGE = 'idempotency-key must be 1–128 characters of A–Z, a–z, 0–9, _ or -'
  for (const key of ['', 'has space', 'k'.repeat(129), 'ünï', 'a.b']) {
    for (const [path, body] of [['chat', { sessionId, message: 'hi' }], ['regenerate', { sessionId }], ['initialize', { companionConfig }]] as const) {
      const response = await post(path, body, { 'idempotency-key': key })
      t.equal(response.status, 400, `${path} ${JSON.stringify(key)}`)
      t.same(await response.json(), errorBody('VALIDATION_ERROR', MESSAGE, 400))
    }
  }
  t.equal((await post('chat', { sessionId, message: 'hi' }, { 'idempotency-key': 'k'.repeat(128) })).status, 200, '128 characters are fine')
  t.equal(fake.requests.length, 2)
})

t.test('Idempotency-Key: a repeat while the first runs is 409 REQUEST_IN_PROGRESS (not SESSION_BUSY)', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'Slow reply.', delayMs: 1500 })
  const key = { 'idempotency-key': 'slow-1' }
  const first = post('chat', { sessionId, message: 'hi' }, key)
  await fake.waitForRequests(2)
  const repeat = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(repeat.status, 409)
  t.same(await repeat.json(), IN_PROGRESS)
  t.equal((await first).status, 200)
  const replay = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(replay.headers.get('idempotent-replayed'), 'true', 'once it is done, a repeat is a replay')
  t.equal(fake.requests.length, 2)
  t.same((await exportOf(sessionId)).messages.map((m: any) => m.text), [GREETING, 'hi', 'Slow reply.'])
})

t.test('Idempotency-Key: a 503 is not remembered; the retry answers the kept message instead of keeping it twice', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script(apiError(503), apiError(503), apiError(503), { text: 'Here now.' })
  const key = { 'idempotency-key': 'retry-me' }
  const failed = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(failed.status, 503)
  t.same((await exportOf(sessionId)).messages.map((m: any) => m.text), [GREETING, 'hi'], 'the 503 kept the message')

  const retried = await post('chat', { sessionId, message: 'hi' }, key)
  t.equal(retried.status, 200)
  t.equal(retried.headers.get('idempotent-replayed'), null, 'run again, not replayed')
  t.match(await retried.json(), { sessionId, message: 'Here now.', fallback: false })
  t.same(sent(fake, 4), [['model', GREETING], ['user', 'hi']], 'the model saw the message once')
  t.same((await exportOf(sessionId)).messages.map((m: any) => [m.role, m.text]),
    [['model', GREETING], ['user', 'hi'], ['model', 'Here now.']], 'kept once, now answered')

  const withoutKey = await post('chat', { sessionId, message: 'hi' })
  t.equal(withoutKey.status, 200, 'without a key the same text is a new message')
  t.equal((await exportOf(sessionId)).messages.length, 5)
})

t.test('Idempotency-Key: a retried 503 continues the session the 503 created (chat without sessionId, initialize)', async (t) => {
  const { fake, app, post, exportOf } = await setup(t)
  fake.script(apiError(503), apiError(503), apiError(503), { text: 'Found you.' })
  const key = { 'idempotency-key': 'stateless-client' }
  const failed = await post('chat', { companionConfig, message: 'hi' }, key)
  t.equal(failed.status, 503)
  const { sessionId } = await failed.json() as { sessionId: string }
  const retried = await post('chat', { companionConfig, message: 'hi' }, key)
  t.equal(retried.status, 200)
  t.match(await retried.json(), { sessionId, message: 'Found you.' }, 'the same session')
  t.same((await exportOf(sessionId)).messages.map((m: any) => [m.role, m.text]), [['user', 'hi'], ['model', 'Found you.']])
  t.same(await app.sessions.counts(), { companion: 1, multiplayer: 0 })

  fake.script(apiError(503), apiError(503), apiError(503), { text: GREETING })
  const initKey = { 'idempotency-key': 'init-retry' }
  const initFailed = await post('initialize', { companionConfig }, initKey)
  t.equal(initFailed.status, 503)
  const first = (await initFailed.json() as { sessionId: string }).sessionId
  const initRetried = await post('initialize', { companionConfig }, initKey)
  t.equal(initRetried.status, 200)
  t.match(await initRetried.json(), { sessionId: first, greeting: GREETING })
  t.same((await exportOf(first)).messages.map((m: any) => m.text), [GREETING])
  t.same(await app.sessions.counts(), { companion: 2, multiplayer: 0 })
})

t.test('Idempotency-Key: a streamed first request is remembered as its final JSON body', async (t) => {
  const { fake, post, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ chunks: ['Stre', 'amed.'] })
  const key = { 'idempotency-key': 'sse-1' }
  const streamed = await post('chat', { sessionId, message: 'hi' }, { ...key, ...SSE })
  const done = parseEvents(await streamed.text()).at(-1)
  t.equal(done?.event, 'done')
  for (const headers of [{ ...key, ...SSE }, key]) {
    const repeat = await post('chat', { sessionId, message: 'hi' }, headers)
    t.equal(repeat.status, 200)
    t.equal(repeat.headers.get('content-type'), 'application/json; charset=utf-8')
    t.equal(repeat.headers.get('idempotent-replayed'), 'true')
    t.same(await repeat.json(), done?.data)
  }
  t.equal(fake.requests.length, 2)
})

t.test('one reply at a time: chat or regenerate while a reply is generated → 409 SESSION_BUSY, Retry-After: 1, nothing stored', async (t) => {
  const { fake, post, exportOf, newSession } = await setup(t)
  const sessionId = await newSession()
  fake.script({ text: 'Slow reply.', delayMs: 1500 })
  const first = post('chat', { sessionId, message: 'first' })
  await fake.waitForRequests(2)
  for (const [path, body, headers] of [
    ['chat', { sessionId, message: 'second' }, {}],
    ['chat', { sessionId, message: 'second' }, { 'idempotency-key': 'other-key' }],
    ['regenerate', { sessionId }, SSE]
  ] as const) {
    const busy = await post(path, body, headers)
    t.equal(busy.status, 409, path)
    t.equal(busy.headers.get('retry-after'), '1')
    t.same(await busy.json(), BUSY)
  }
  t.equal((await first).status, 200)
  t.equal(fake.requests.length, 2, 'no model call for them')
  t.same((await exportOf(sessionId)).messages.map((m: any) => m.text), [GREETING, 'first', 'Slow reply.'], 'nothing of them stored')
  t.equal((await post('chat', { sessionId, message: 'second' })).status, 200, 'free again once the reply is kept')

  const other = await newSession()
  fake.script({ text: 'Slow again.', delayMs: 1500 })
  const streamed = post('chat', { sessionId: other, message: 'first' }, SSE)
  await fake.waitForRequests(5)
  t.equal((await post('chat', { sessionId: other, message: 'second' })).status, 409, 'a streamed reply holds the session too')
  t.equal((await post('chat', { sessionId, message: 'third' })).status, 200, 'another session is not held up')
  t.match(parseEvents(await (await streamed).text()).at(-1), { event: 'done' })
})

t.test('issue 15: lengths are checked after NFKC normalisation, naming the field', async (t) => {
  const { fake, post, newSession } = await setup(t)
  const sessionId = await newSession()
  const ligature = '\uFDFA' // one character, 18 after NFKC
  t.equal(ligature.normalize('NFKC').length, 18)
  const cases: Array<[string, unknown, string]> = [
    ['initialize', { companionConfig: { ...companionConfig, personality: ligature.repeat(56) } }, 'companionConfig.personality must NOT have more than 1000 characters'],
    ['initialize', { companionConfig: { ...companionConfig, name: ligature.repeat(3) } }, 'companionConfig.name must NOT have more than 50 characters'],
    ['chat', { sessionId, message: ligature.repeat(112) }, 'message must NOT have more than 2000 characters']
  ]
  for (const [path, body, error] of cases) {
    const response = await post(path, body)
    t.equal(response.status, 400, error)
    t.same(await response.json(), errorBody('VALIDATION_ERROR', error, 400))
  }
  t.equal(fake.requests.length, 1, 'no model call')
  const fits = await post('initialize', { companionConfig: { ...companionConfig, personality: ligature.repeat(55) } })
  t.equal(fits.status, 200, '990 characters after NFKC fit')
})

t.test('/docs documents regenerate, export and the Idempotency-Key header from their schemas', async (t) => {
  const { url } = await setup(t)
  const { paths } = await (await fetch(`${url}/docs/json`)).json() as { paths: Record<string, any> }
  const regenerate = paths['/api/ai-companion/regenerate'].post
  t.same(Object.keys(regenerate.responses).sort(), ['200', '400', '404', '409', '413', '415', '422', '429', '500', '503'])
  t.same(Object.keys(regenerate.responses['200'].content).sort(), ['application/json', 'text/event-stream'])
  t.same(Object.keys(regenerate.requestBody.content['application/json'].schema.properties), ['sessionId'])
  for (const path of ['initialize', 'chat', 'regenerate']) {
    const header = paths[`/api/ai-companion/${path}`].post.parameters.find((p: any) => p.in === 'header')
    t.match(header, { name: 'idempotency-key', required: false, schema: { pattern: '^[A-Za-z0-9_-]{1,128}$' } }, path)
  }
  const exported = paths['/api/sessions/{id}/export'].get
  t.same(Object.keys(exported.responses).sort(), ['200', '400', '404', '409', '429', '500', '503'])
  const schema = exported.responses['200'].content['application/json'].schema
  t.same(Object.keys(schema.properties), ['sessionId', 'kind', 'companion', 'createdAt', 'exportedAt', 'messages'])
  t.same(Object.keys(schema.properties.messages.items.properties), ['role', 'text', 'timestamp', 'alternatives'])
})
