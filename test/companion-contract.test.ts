import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { blockedReply } from '../src/services/ai/fallbacks.js'
import { LOG_NAMES } from '../src/services/logs/log-files.js'
import { aiEnv, apiError, DEFAULT_REPLY, startFakeGemini } from './fake-gemini.js'
import { addBoomRoute, buildAppWithLog, buildTestApp, persona, readLog, until } from './helper.js'

/*
 * SPEC §4 promises that the companion tests took for granted, each proved
 * through the whole app against the fake Gemini: Retry-After on every 503,
 * the filter finish reasons, and the API key in no log.
 */

const post = (app: Awaited<ReturnType<typeof buildTestApp>>, url: string, payload: object) =>
  app.inject({ method: 'POST', url, payload })

t.test('the initialize 503 carries Retry-After, equal to the body\'s retryAfter', async (t) => {
  const fake = await startFakeGemini(t)
  const app = await buildTestApp(t, aiEnv(fake, { AI_MAX_ATTEMPTS: 1 }))
  fake.script(apiError(503))
  const response = await post(app, '/api/ai-companion/initialize', { companionConfig: persona })
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '1')
  t.match(response.json(), { code: 'AI_UNAVAILABLE', fallback: true, retryAfter: 1 })
})

t.test('a full queue: the refused request gets 503 with Retry-After at once; the others are answered', async (t) => {
  const fake = await startFakeGemini(t)
  // AI_MAX_CONCURRENCY=1: one call in flight, one waiting (up to AI_TIMEOUT_MS), the third refused.
  const app = await buildTestApp(t, aiEnv(fake, { AI_MAX_CONCURRENCY: 1, AI_TIMEOUT_MS: 20_000 }))
  fake.script({ text: DEFAULT_REPLY, delayMs: 1500 })
  const chat = () => post(app, '/api/ai-companion/chat', { message: 'hi', companionConfig: persona })
  const first = chat()
  await until(() => fake.inFlight === 1, 10_000, 'the first call to reach the fake')
  const others = [chat(), chat()]
  // Whichever of the two reaches the limiter second is refused, without waiting for the first.
  const refused = await Promise.race(others)
  t.equal(fake.inFlight, 1, 'refused while the first call is still in flight')
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.match(refused.json(), { code: 'AI_UNAVAILABLE', fallback: true, retryAfter: 1 })
  t.same((await Promise.all([first, ...others])).map((response) => response.statusCode).sort(), [200, 200, 503])
  t.equal(fake.maxInFlight, 1)
  t.match(await readLog(app.config.LOG_DIR, 'ai-requests').then((lines) => lines.find((line) => line.result === 'failed')),
    { errorCode: 'QUEUE_FULL', attempts: 0 })
})

t.test('finish reasons BLOCKLIST and SPII are blocked replies: a deflection, not stored, logged as blocked', async (t) => {
  const fake = await startFakeGemini(t)
  const app = await buildTestApp(t, aiEnv(fake))
  const initialized = await post(app, '/api/ai-companion/initialize', { companionConfig: persona })
  const { sessionId } = initialized.json()
  fake.script({ text: 'Here is a word on the list', finishReason: 'BLOCKLIST' }, { text: 'Their phone number is', finishReason: 'SPII' })
  for (const finishReason of ['BLOCKLIST', 'SPII']) {
    const response = await post(app, '/api/ai-companion/chat', { sessionId, message: `trigger ${finishReason}` })
    t.equal(response.statusCode, 200, finishReason)
    t.match(response.json(), { sessionId, message: blockedReply(), fallback: true, blocked: true }, finishReason)
  }
  t.equal(fake.requests.length, 3, 'not retried')
  t.equal((await app.inject(`/api/sessions/${sessionId as string}`)).json().messageCount, 1, 'neither exchange is history')
  await app.close()
  const lines = await readLog(app.config.LOG_DIR, 'ai-requests')
  t.same(lines.slice(1).map(({ result, finishReason, errorCode }) => ({ result, finishReason, errorCode })), [
    { result: 'blocked', finishReason: 'BLOCKLIST', errorCode: 'REPLY_BLOCKED' },
    { result: 'blocked', finishReason: 'SPII', errorCode: 'REPLY_BLOCKED' }
  ])
})

t.test('the API key reaches no log file and no stdout line, whatever happens', async (t) => {
  const key = 'AIzaTestKey-0d9c4e7b'
  const fake = await startFakeGemini(t)
  const { app, config, stdout } = await buildAppWithLog(t, aiEnv(fake, { GEMINI_API_KEY: key, AI_MAX_ATTEMPTS: 2, AI_TIMEOUT_MS: 300 }), addBoomRoute)
  fake.script(
    {}, // greeting
    apiError(400, [], `API key not valid: ${key}`), // an upstream that echoes the key
    apiError(503), apiError(503),
    { hang: true }, { hang: true }
  )
  const { sessionId } = (await post(app, '/api/ai-companion/initialize', { companionConfig: persona })).json()
  for (let i = 0; i < 3; i++) await post(app, '/api/ai-companion/chat', { sessionId, message: 'hello' })
  await app.inject({ url: '/test/boom', headers: { 'x-goog-api-key': key, authorization: `Bearer ${key}` } })
  t.ok(fake.requests.every((request) => request.apiKey === key), 'the key was in use')
  await app.close() // flushes every file

  for (const name of LOG_NAMES) {
    const text = await readFile(join(config.LOG_DIR, `${name}.log`), 'utf8')
    t.notMatch(text, key, `${name}.log`)
  }
  t.equal((await readLog(config.LOG_DIR, 'ai-requests')).length, 4, 'every AI request was logged')
  t.notMatch(JSON.stringify(stdout()), key, 'stdout')
})
