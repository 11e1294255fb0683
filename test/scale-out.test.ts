import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { buildApp } from '../src/app.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import { aiEnv, startFakeGemini, type FakeGemini } from './fake-gemini.js'
import { startServer, testConfig } from './helper.js'
import { startRedis, type RedisServer } from './redis-server.js'
import { TestClient, type Envelope } from './ws-client.js'

/*
 * SPEC §9 "several instances behind a load balancer behave as one": two
 * instances of the whole app, listening on their own ports, on one real
 * redis-server. Each test has its own REDIS_PREFIX, so counters and sessions
 * of one test never meet another's. Commands get 5 s rather than 1 s: these
 * tests are about sharing, not timing, and the machine running them is busy.
 */

const companionConfig = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: 'female', role: 'girlfriend' }

let redis: RedisServer
let fake: FakeGemini
t.before(async () => {
  redis = await startRedis(t)
  fake = await startFakeGemini(t)
})

type Overrides = Parameters<typeof startServer>[1]

async function twoInstances (t: Test, overrides: Overrides = {}) {
  const prefix = `s${randomUUID().slice(0, 8)}:`
  const env = aiEnv(fake, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, REDIS_COMMAND_TIMEOUT_MS: 5000, ...overrides })
  const [a, b] = await Promise.all([startServer(t, env), startServer(t, env)])
  return { a, b, prefix }
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

const errorOf = (envelope: Envelope) => envelope.event === 'error' ? envelope.data.code : envelope.event

t.test('a companion session created on A continues on B: chat, GET, DELETE', async (t) => {
  const { a, b } = await twoInstances(t)
  const created = await post(`${a.url}/api/ai-companion/initialize`, { companionConfig })
  t.equal(created.status, 200)
  const { sessionId } = await created.json() as { sessionId: string }
  t.match(await (await fetch(`${b.url}/api/sessions/${sessionId}`)).json(), { sessionId, messageCount: 1 }, 'B reads it, greeting stored')

  fake.script({ text: 'Reply from B' })
  const before = fake.requests.length
  const chat = await post(`${b.url}/api/ai-companion/chat`, { sessionId, message: 'hello from the user' })
  t.equal(chat.status, 200)
  t.match(await chat.json(), { sessionId, message: 'Reply from B', companionName: 'Ava', fallback: false })
  const sent = fake.requests[before].body
  t.match(sent.systemInstruction.parts[0].text, '"personality":"warm"', 'B used the persona stored on A')

  for (const instance of [a, b]) {
    const info = await fetch(`${instance.url}/api/sessions/${sessionId}`)
    t.equal(info.status, 200)
    t.match(await info.json(), { sessionId, kind: 'companion', companionName: 'Ava', messageCount: 3 }, 'greeting, message and reply, seen alike')
  }
  t.equal((await fetch(`${b.url}/api/sessions/${sessionId}`, { method: 'DELETE' })).status, 204)
  const gone = await fetch(`${a.url}/api/sessions/${sessionId}`)
  t.equal(gone.status, 404)
  t.match(await gone.json(), { code: 'SESSION_NOT_FOUND' }, 'erased on B, gone on A')
  const chatAfter = await post(`${a.url}/api/ai-companion/chat`, { sessionId, message: 'still there?' })
  t.equal(chatAfter.status, 404)
})

t.test('participants, counts and SESSION_FULL are global', async (t) => {
  const { a, b } = await twoInstances(t, { SESSION_MAX_PARTICIPANTS: 2 })
  const code = `room-${randomUUID()}`
  const sam = await TestClient.connect(t, a.url)
  const alex = await TestClient.connect(t, b.url)
  await sam.join(code, 'Sam')
  const joined = await alex.join(code, 'Alex')
  t.same(joined.participants.map((p: { playerName: string }) => p.playerName), ['Sam', 'Alex'], 'Alex on B sees Sam on A')

  for (const instance of [a, b]) {
    const info = await (await fetch(`${instance.url}/api/sessions/${code}`)).json() as Record<string, unknown>
    t.match(info, { kind: 'multiplayer', participantCount: 2, participants: ['Sam', 'Alex'] })
    const health = await (await fetch(`${instance.url}/health`)).json() as Record<string, any>
    t.equal(health.activeSessions, 1)
    t.equal(health.checks.redis, 'ok')
    const stats = await (await fetch(`${instance.url}/api/stats`)).json() as Record<string, any>
    t.same(stats.sessions, { active: 1, companion: 0, multiplayer: 1 })
    t.equal(stats.instanceId, instance.app.instanceId)
  }
  t.not(a.app.instanceId, b.app.instanceId)

  const kim = await TestClient.connect(t, a.url)
  kim.send('join-session', { sessionId: code, playerName: 'Kim' })
  const refused = await kim.next()
  t.equal(errorOf(refused), 'SESSION_FULL', 'the third is refused on A, though A holds only one of the two')

  alex.send('leave-session', { sessionId: code }, 'bye')
  t.match(await alex.next(), { event: 'ack', data: { id: 'bye' } })
  await kim.join(code, 'Kim')
  const info = await (await fetch(`${b.url}/api/sessions/${code}`)).json() as Record<string, unknown>
  t.match(info, { participantCount: 2, participants: ['Sam', 'Kim'] }, 'a seat freed on B is taken on A')
})

t.test('20 concurrent joins across A and B into a session with room for 3: exactly 3 succeed', async (t) => {
  const { a, b } = await twoInstances(t, { SESSION_MAX_PARTICIPANTS: 3 })
  const code = `race-${randomUUID()}`
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => TestClient.connect(t, i % 2 === 0 ? a.url : b.url)))
  for (const [i, client] of clients.entries()) client.send('join-session', { sessionId: code, playerName: `P${i}` })
  const first = await Promise.all(clients.map((client) => client.next(10_000)))
  t.equal(first.filter((envelope) => envelope.event === 'session-joined').length, 3)
  t.equal(first.filter((envelope) => errorOf(envelope) === 'SESSION_FULL').length, 17)
  const info = await (await fetch(`${a.url}/api/sessions/${code}`)).json() as Record<string, unknown>
  t.equal(info.participantCount, 3)
})

t.test('the 11th request of one client, split across A and B, is refused (RATE_LIMIT_MAX=10); the slow-down counts across them too', async (t) => {
  const { a, b } = await twoInstances(t, { RATE_LIMIT_MAX: 10, SLOW_DOWN_AFTER: 8, SLOW_DOWN_DELAY_MS: 300, SLOW_DOWN_MAX_DELAY_MS: 300 })
  const statuses: number[] = []
  const delays: number[] = []
  for (let i = 0; i < 11; i++) {
    const started = Date.now()
    const response = await fetch(`${(i % 2 === 0 ? a : b).url}/api/sessions/nothing-here`)
    delays.push(Date.now() - started)
    statuses.push(response.status)
    if (i === 10) {
      t.match(await response.json(), { code: 'RATE_LIMITED', statusCode: 429 })
      t.equal(response.headers.get('ratelimit-limit'), '10')
    }
  }
  t.same(statuses, [...Array(10).fill(404), 429])
  t.ok(delays[8] >= 280 && delays[9] >= 280, `the 9th and 10th are slowed down (${delays.slice(7, 10).join(', ')} ms)`)
  t.ok(delays[6] < 280, 'the 7th is not')
})

t.test('sessions expire in Redis and the key count returns to where it started', async (t) => {
  const { a, b, prefix } = await twoInstances(t, { SESSION_TTL_MS: 1000, RATE_LIMIT_WINDOW_MS: 1000, AI_RATE_LIMIT_WINDOW_MS: 1000 })
  // The fan-out stream is the deployment's, not a session's: bounded by REDIS_FANOUT_MAXLEN, it never expires.
  const keys = async () => (await redis.command('KEYS', `${prefix}*`)).split('\r\n').filter((line) => line.startsWith(prefix) && line !== `${prefix}fanout`)
  const start = await keys()
  t.same(start, [], 'nothing yet under this prefix')
  const { sessionId } = await (await post(`${a.url}/api/ai-companion/initialize`, { companionConfig })).json() as { sessionId: string }
  const client = await TestClient.connect(t, b.url)
  await client.join('quiet-room', 'Sam')
  client.send('chat message', { sessionId: 'quiet-room', text: 'hello' }, 'm1')
  t.match(await client.next(), { event: 'ack' })
  client.send('leave-session', { sessionId: 'quiet-room' }, 'm2')
  t.match(await client.next(), { event: 'ack', data: { id: 'm2' } })
  t.ok((await keys()).length >= 5, 'session keys, indexes and counters exist')
  const deadline = Date.now() + 10_000
  let left = await keys()
  while (left.length > 0 && Date.now() < deadline) {
    await fetch(`${a.url}/health`) // counting forgets expired index entries
    await new Promise((resolve) => setTimeout(resolve, 200))
    left = await keys()
  }
  t.same(left, [], 'every key is gone')
  t.equal((await fetch(`${b.url}/api/sessions/${sessionId}`)).status, 404)
})

t.test('creating a session forgets the index entries of expired ones, though nothing reads the counts', async (t) => {
  const { a, prefix } = await twoInstances(t, { SESSION_TTL_MS: 1000, STATS_SAMPLE_INTERVAL_MS: 600_000 })
  const indexSize = async () => (await redis.command('ZCARD', `${prefix}sessions:companion`)).trim()
  for (let i = 0; i < 3; i++) await post(`${a.url}/api/ai-companion/initialize`, { companionConfig })
  t.equal(await indexSize(), ':3')
  await new Promise((resolve) => setTimeout(resolve, 1200))
  t.equal(await indexSize(), ':3', 'expired entries stay until something prunes them')
  await post(`${a.url}/api/ai-companion/initialize`, { companionConfig })
  t.equal(await indexSize(), ':1', 'only the new session is left')
})

t.test('buildApp({ sessionStore }): apps sharing one injected store see the same sessions; the store stays its creator\'s', async (t) => {
  const store = createMemorySessionStore({ ttlMs: 60_000 })
  t.teardown(() => store.close())
  const build = async () => {
    const app = await buildApp(await testConfig(t), pino({ level: 'silent' }), { sessionStore: store })
    t.teardown(() => app.close())
    return app
  }
  const [a, b] = [await build(), await build()]
  t.equal(a.sessions, store)
  const created = await a.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig } })
  const { sessionId } = created.json()
  t.match((await b.inject(`/api/sessions/${sessionId}`)).json(), { sessionId, companionName: 'Ava' })
  await a.close()
  t.ok(await store.get(sessionId), 'closing an app does not close an injected store')
  t.equal((await b.inject(`/api/sessions/${sessionId}`)).statusCode, 200)
})
