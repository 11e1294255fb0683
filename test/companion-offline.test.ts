import t from 'tap'
import { greetingFallback, offlineReply } from '../src/services/ai/fallbacks.js'
import { buildAppWithLog, buildTestApp, ISO, spawnServer, waitForLogLine } from './helper.js'

/* SPEC §4.6: no GEMINI_API_KEY → a working companion with canned replies, said loudly at startup. */

const companionConfig = { name: 'Mika', personality: 'calm', identity: 'a penpal', role: 'friend' }
const persona = { ...companionConfig, gender: '' }

t.test('offline mode answers 200 with persona-aware canned replies', async (t) => {
  const app = await buildTestApp(t, { GEMINI_API_KEY: '' })
  const start = await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig } })
  t.equal(start.statusCode, 200)
  t.match(start.json(), { greeting: greetingFallback(persona), companionName: 'Mika', timestamp: ISO, fallback: true })
  t.equal(start.json().greeting, 'Hi, I\'m Mika! I\'m really happy you\'re here. How has your day been so far?')
  const { sessionId } = start.json()

  const expected: Array<[string, string]> = [
    ['Hello!', 'Hey you! It\'s Mika. What are you up to right now?'],
    ['how are you doing?', 'Mika is doing well, especially now that you\'re here. How are you feeling today?'],
    ['thanks for listening', 'Anytime. That\'s what I\'m here for.'],
    ['ok bye', 'Bye for now! I\'ll be right here whenever you want to talk again.'],
    ['I adopted a cat', 'I love hearing from you, tell me more! (I\'m Mika in offline mode, so my answers are simple for now.)']
  ]
  for (const [message, reply] of expected) {
    const response = await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { sessionId, message } })
    t.equal(response.statusCode, 200)
    t.same(Object.keys(response.json()), ['sessionId', 'message', 'companionName', 'timestamp', 'fallback'])
    t.match(response.json(), { sessionId, message: reply, companionName: 'Mika', fallback: true })
    t.equal(reply, offlineReply(persona, message))
  }
  t.equal((await app.inject(`/api/sessions/${sessionId}`)).json().messageCount, 5, 'the user\'s messages are kept, canned replies are not')
  t.same(app.ai.status(), { provider: 'offline', model: 'gemini-2.5-flash', circuit: 'closed' })
  const health = await app.inject('/health')
  t.same(health.json().ai, { provider: 'offline', model: 'gemini-2.5-flash', circuit: 'closed' })
  t.match(await waitForLogLine(app.config.LOG_DIR, 'ai-requests', (line) => line.operation === 'greeting'),
    { result: 'offline', attempts: 0, streamed: false, msg: 'ai request' })
})

const OFFLINE_WARNING = 'No AI provider is configured: the AI companion runs in OFFLINE MODE and answers with canned replies. ' +
  'Set GEMINI_API_KEY to use Gemini, or OPENAI_BASE_URL and OPENAI_MODEL for an OpenAI-compatible server (README "AI providers").'

t.test('the app warns once at startup when no AI provider is configured, and not when one is', async (t) => {
  const offline = await buildAppWithLog(t)
  t.same(offline.stdout().filter((line) => line.level === 'warn').map((line) => line.msg), [OFFLINE_WARNING], 'one warning, this one')
  await offline.app.inject('/health/live')
  t.equal(offline.stdout().filter((line) => line.msg === OFFLINE_WARNING).length, 1, 'at startup only, not per request')

  const chosen = await buildAppWithLog(t, { GEMINI_API_KEY: 'test-key', AI_PROVIDER: 'offline' })
  t.same(chosen.stdout().filter((line) => line.level === 'warn').map((line) => line.msg), [OFFLINE_WARNING], 'AI_PROVIDER=offline, chosen: the same warning')
  t.equal(chosen.app.ai.status().provider, 'offline')

  const online = await buildAppWithLog(t, { GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: 'http://127.0.0.1:9' })
  t.same(online.stdout().filter((line) => line.level === 'warn'), [], 'no warning with a key')
  t.equal(online.app.ai.status().provider, 'gemini')
  const local = await buildAppWithLog(t, { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_MODEL: 'llama3.2:3b' })
  t.same(local.stdout().filter((line) => line.level === 'warn'), [], 'no warning with an OpenAI-compatible server')
  t.same(local.app.ai.status(), { provider: 'openai', model: 'llama3.2:3b', circuit: 'closed' })
})

t.test('the real process prints the warning on stdout and starts anyway', async (t) => {
  const server = await spawnServer(t)
  const url = await server.url
  t.equal((await fetch(`${url}/health/live`)).status, 200, 'and starts anyway')
  const lines = server.stdout().split('\n').filter(Boolean).map((line) => JSON.parse(line))
  t.same(lines.filter((line) => line.level === 'warn').map((line) => line.msg), [OFFLINE_WARNING])
  t.ok(lines.findIndex((line) => line.msg === OFFLINE_WARNING) < lines.findIndex((line) => line.msg === 'ready'), 'before "ready"')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
