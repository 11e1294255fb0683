import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { aiEnv, apiError, startFakeGemini } from './fake-gemini.js'
import { startServer } from './helper.js'
import { startRedis, type RedisServer } from './redis-server.js'

/*
 * SPEC §9: idempotency keys, SESSION_BUSY, regenerate and export hold across
 * instances. Two instances of the whole app on one real redis-server, each
 * test under its own REDIS_PREFIX, with its own fake Gemini.
 */

const companionConfig = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: 'female', role: 'girlfriend' }
const GREETING = 'Hi, I am Ava. Tell me about your day?'

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

async function twoInstances (t: Test) {
  const fake = await startFakeGemini(t)
  const env = aiEnv(fake, { REDIS_URL: redis.url, REDIS_PREFIX: `c${randomUUID().slice(0, 8)}:` })
  const [a, b] = await Promise.all([startServer(t, env), startServer(t, env)])
  const post = (instance: { url: string }, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${instance.url}/api/ai-companion/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  fake.script({ text: GREETING })
  const created = await post(a, 'initialize', { companionConfig })
  t.equal(created.status, 200)
  const { sessionId } = await created.json() as { sessionId: string }
  const exportOf = async (instance: { url: string }) => (await fetch(`${instance.url}/api/sessions/${sessionId}/export`)).json() as Promise<any>
  return { fake, a, b, post, sessionId, exportOf }
}

t.test('a reply generated on A: B answers REQUEST_IN_PROGRESS for its key, SESSION_BUSY otherwise, then replays it', async (t) => {
  const { fake, a, b, post, sessionId, exportOf } = await twoInstances(t)
  fake.script({ text: 'Slow reply from A.', delayMs: 1500 })
  const key = { 'idempotency-key': 'phone-1' }
  const first = post(a, 'chat', { sessionId, message: 'hi' }, key)
  await fake.waitForRequests(2)

  const repeat = await post(b, 'chat', { sessionId, message: 'hi' }, key)
  t.equal(repeat.status, 409)
  t.same(await repeat.json(), { error: 'A request with this Idempotency-Key is still being answered', code: 'REQUEST_IN_PROGRESS', statusCode: 409 })
  for (const [path, body] of [['chat', { sessionId, message: 'other' }], ['regenerate', { sessionId }]] as const) {
    const busy = await post(b, path, body)
    t.equal(busy.status, 409, path)
    t.equal(busy.headers.get('retry-after'), '1')
    t.same(await busy.json(), {
      error: 'The companion is still answering in this session; retry when the reply is done', code: 'SESSION_BUSY', statusCode: 409, retryAfter: 1
    })
  }

  const answered = await first
  t.equal(answered.status, 200)
  const body = await answered.text()
  const replay = await post(b, 'chat', { sessionId, message: 'hi' }, key)
  t.equal(replay.status, 200)
  t.equal(replay.headers.get('idempotent-replayed'), 'true')
  t.equal(await replay.text(), body, 'B replays what A answered')
  t.equal(fake.requests.length, 2, 'one model call in all')
  t.same((await exportOf(b)).messages.map((m: any) => m.text), [GREETING, 'hi', 'Slow reply from A.'])
  t.equal((await post(b, 'chat', { sessionId, message: 'free?' })).status, 200, 'B may generate once A is done')
})

t.test('regenerate on B replaces A\'s reply; the export on A has it with its alternative', async (t) => {
  const { fake, a, b, post, sessionId, exportOf } = await twoInstances(t)
  fake.script({ text: 'Reply "one" from A \\ é 💞' }, { text: 'Reply two from B' })
  const chatted = await (await post(a, 'chat', { sessionId, message: 'hi' })).json() as { timestamp: string }
  const regenerated = await post(b, 'regenerate', { sessionId })
  t.equal(regenerated.status, 200)
  const { timestamp } = await regenerated.json() as { timestamp: string }
  const exported = await exportOf(a)
  t.same(exported.messages.slice(1), [
    { role: 'user', text: 'hi', timestamp: exported.messages[1].timestamp },
    { role: 'model', text: 'Reply two from B', timestamp, alternatives: ['Reply "one" from A \\ é 💞'] }
  ])
  t.ok(exported.messages[1].timestamp <= chatted.timestamp)
  t.same(fake.requests[2].body.contents.map((turn: any) => turn.role), ['model', 'user'], 'B sent the history before the message')
})

t.test('a chat that failed on A with a key, retried on B, answers the kept message once', async (t) => {
  const { fake, a, b, post, sessionId, exportOf } = await twoInstances(t)
  fake.script(apiError(503), apiError(503), apiError(503), { text: 'Answered on B.' })
  const key = { 'idempotency-key': 'retry-across' }
  t.equal((await post(a, 'chat', { sessionId, message: 'hi' }, key)).status, 503)
  const retried = await post(b, 'chat', { sessionId, message: 'hi' }, key)
  t.equal(retried.status, 200)
  t.match(await retried.json(), { message: 'Answered on B.' })
  t.same((await exportOf(a)).messages.map((m: any) => [m.role, m.text]), [['model', GREETING], ['user', 'hi'], ['model', 'Answered on B.']])
})
