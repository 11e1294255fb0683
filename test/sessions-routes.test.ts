import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { App } from '../src/app.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import { buildTestApp, ISO, NO_LIMITS, persona as companionConfig, startServer, until } from './helper.js'
import { TestClient } from './ws-client.js'

/* SPEC §2.3 GET/DELETE /api/sessions/:id for both kinds, and §9 expiry of the in-memory store. */

const ID_ERROR = { error: 'id must be 1–128 characters of A–Z, a–z, 0–9, _ or -', code: 'VALIDATION_ERROR', statusCode: 400 }
const limits = NO_LIMITS

const notFound = (sessionId: string) =>
  ({ sessionId, isActive: false, participantCount: 0, error: 'Session not found or expired', code: 'SESSION_NOT_FOUND', statusCode: 404 })

/** A companion session made the way a client makes one (offline mode: no Gemini needed). */
async function companionSession (t: Test, app: App): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig } })
  t.equal(response.statusCode, 200)
  const { sessionId } = response.json()
  t.equal((await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { sessionId, message: 'my secret message' } })).statusCode, 200)
  return sessionId
}

t.test('GET a companion session: its figures, never its persona or messages', async (t) => {
  const app = await buildTestApp(t, limits)
  const sessionId = await companionSession(t, app)
  const response = await app.inject(`/api/sessions/${sessionId}`)
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.same(Object.keys(body).sort(),
    ['companionName', 'createdAt', 'expiresAt', 'isActive', 'kind', 'lastActivity', 'messageCount', 'participantCount', 'sessionId'])
  t.match(body, {
    sessionId,
    kind: 'companion',
    isActive: true,
    participantCount: 1,
    companionName: 'Ava',
    messageCount: 1,
    createdAt: ISO,
    lastActivity: ISO,
    expiresAt: ISO
  })
  t.equal(Date.parse(body.expiresAt) - Date.parse(body.lastActivity), 1_800_000, 'SESSION_TTL_MS after the last activity (30 min by default)')
  t.ok(Date.parse(body.lastActivity) >= Date.parse(body.createdAt))
  t.notMatch(response.body, /warm|long-distance|girlfriend|secret/)
})

t.test('GET a multiplayer session: participants by name, never message text', async (t) => {
  const app = await buildTestApp(t, limits)
  await app.sessions.join('room_1', { userId: 'u1', playerName: 'Sam' }, 10)
  await app.sessions.join('room_1', { userId: 'u2', playerName: 'Alex' }, 10)
  await app.sessions.recordEvent('room_1', { event: 'chat message', data: { sessionId: 'room_1', text: 'a private thought' } }, { keep: 50 })
  const response = await app.inject('/api/sessions/room_1')
  t.equal(response.statusCode, 200)
  t.same(Object.keys(response.json()).sort(),
    ['createdAt', 'expiresAt', 'isActive', 'kind', 'lastActivity', 'messageCount', 'participantCount', 'participants', 'sessionId'])
  t.match(response.json(), {
    sessionId: 'room_1',
    kind: 'multiplayer',
    isActive: true,
    participantCount: 2,
    participants: ['Sam', 'Alex'],
    messageCount: 1,
    createdAt: ISO,
    lastActivity: ISO,
    expiresAt: null
  })
  t.notMatch(response.body, 'private')
})

t.test('expiresAt: null while people are connected to a multiplayer session, last activity + TTL once it is empty', async (t) => {
  const { url } = await startServer(t, limits)
  const sam = await TestClient.connect(t, url)
  await sam.join('room_live', 'Sam')
  const live = await fetch(`${url}/api/sessions/room_live`)
  t.equal(live.status, 200)
  t.match(await live.json(), { participantCount: 1, participants: ['Sam'], expiresAt: null }, 'it does not expire while anyone is in it')

  sam.ws.close()
  await sam.closed
  let body: Record<string, any> = {}
  await until(async () => {
    body = await (await fetch(`${url}/api/sessions/room_live`)).json() as Record<string, any>
    return body.participantCount === 0
  }, 5000, 'Sam to have left')
  t.match(body, { participants: [], expiresAt: ISO })
  t.equal(Date.parse(body.expiresAt) - Date.parse(body.lastActivity), 1_800_000, 'empty: SESSION_TTL_MS after the last activity')
  const { paths } = await (await fetch(`${url}/docs/json`)).json() as Record<string, any>
  t.match(paths['/api/sessions/{id}'].get.responses['200'].content['application/json'].schema.properties.expiresAt,
    { type: 'string', format: 'date-time', nullable: true }, 'the OpenAPI document says it may be null')
})

t.test('unknown ids are 404 with the inactive shape; malformed ids are 400', async (t) => {
  const app = await buildTestApp(t, limits)
  for (const method of ['GET', 'DELETE'] as const) {
    const response = await app.inject({ method, url: '/api/sessions/no-such-session' })
    t.equal(response.statusCode, 404)
    t.same(Object.keys(response.json()), ['sessionId', 'isActive', 'participantCount', 'error', 'code', 'statusCode'])
    t.same(response.json(), notFound('no-such-session'))
    for (const id of ['has%20space', 'a'.repeat(129), 'semi;colon', '%C3%A9t%C3%A9']) {
      const bad = await app.inject({ method, url: `/api/sessions/${id}` })
      t.equal(bad.statusCode, 400, `${method} ${id}`)
      t.same(bad.json(), ID_ERROR)
    }
  }
  t.equal((await app.inject(`/api/sessions/${'a'.repeat(128)}`)).statusCode, 404, '128 characters is a valid id')
})

t.test('DELETE erases a companion session and its history now', async (t) => {
  const app = await buildTestApp(t, limits)
  const sessionId = await companionSession(t, app)
  const erased = await app.inject({ method: 'DELETE', url: `/api/sessions/${sessionId}` })
  t.equal(erased.statusCode, 204)
  t.equal(erased.body, '')
  t.same((await app.inject(`/api/sessions/${sessionId}`)).json(), notFound(sessionId))
  const chat = await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { sessionId, message: 'still there?' } })
  t.equal(chat.statusCode, 404, 'the conversation cannot be continued')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/sessions/${sessionId}` })).statusCode, 404)
  t.same(await app.sessions.counts(), { companion: 0, multiplayer: 0 })
})

t.test('DELETE refuses a multiplayer session: it belongs to everyone in it', async (t) => {
  const app = await buildTestApp(t, limits)
  await app.sessions.join('room_2', { userId: 'u1', playerName: 'Sam' }, 10)
  const response = await app.inject({ method: 'DELETE', url: '/api/sessions/room_2' })
  t.equal(response.statusCode, 409)
  t.same(response.json(), {
    error: 'Only companion sessions can be erased; a multiplayer session ends when its participants leave',
    code: 'SESSION_NOT_DELETABLE',
    statusCode: 409
  })
  t.equal((await app.inject('/api/sessions/room_2')).statusCode, 200)
})

t.test('a session expires SESSION_TTL_MS after its last activity', async (t) => {
  const app = await buildTestApp(t, { ...limits, SESSION_TTL_MS: 1000 })
  const sessionId = await companionSession(t, app)
  await sleep(600)
  t.equal((await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { sessionId, message: 'keep me' } })).statusCode, 200)
  await sleep(600)
  t.equal((await app.inject(`/api/sessions/${sessionId}`)).statusCode, 200, 'activity moved the expiry')
  await sleep(500)
  t.same((await app.inject(`/api/sessions/${sessionId}`)).json(), notFound(sessionId))
  const chat = await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { sessionId, message: 'hello?' } })
  t.equal(chat.statusCode, 404, 'an expired session is not resurrected')
})

t.test('the sweep removes expired sessions; 10,000 created and expired leave the store empty', async (t) => {
  let now = 0
  const store = createMemorySessionStore({ ttlMs: 1000, sweepIntervalMs: 60_000, now: () => now })
  t.teardown(() => store.close())
  for (let i = 0; i < 10_000; i++) {
    const session = await store.createCompanion(companionConfig)
    await store.appendTurns(session.id, [{ role: 'user', text: 'hi', timestamp: 0 }, { role: 'model', text: 'hello', timestamp: 0 }], 20)
  }
  for (let i = 0; i < 100; i++) {
    await store.join(`room-${i}`, { userId: 'u', playerName: 'Sam' }, 10)
    await store.leave(`room-${i}`, 'u')
  }
  t.same(await store.counts(), { companion: 10_000, multiplayer: 100 })
  now = 999
  t.equal(store.sweep(), 0, 'nothing before its TTL')
  now = 1000
  t.equal(store.sweep(), 10_100)
  t.same(await store.counts(), { companion: 0, multiplayer: 0 })

  const timed = createMemorySessionStore({ ttlMs: 50, sweepIntervalMs: 20 })
  t.teardown(() => timed.close())
  for (let i = 0; i < 100; i++) await timed.createCompanion(companionConfig)
  await sleep(150)
  t.same(await timed.counts(), { companion: 0, multiplayer: 0 }, 'the periodic sweep, without any read')
})

t.test('the routes are in the OpenAPI document', async (t) => {
  const app = await buildTestApp(t, limits)
  const { paths } = (await app.inject('/docs/json')).json()
  t.same(Object.keys(paths['/api/sessions/{id}']).sort(), ['delete', 'get'])
  t.same(Object.keys(paths['/api/sessions/{id}'].get.responses).sort(), ['200', '400', '404', '429', '500', '503'])
  t.same(Object.keys(paths['/api/ai-companion/chat'].post.responses['200'].content).sort(), ['application/json', 'text/event-stream'])
  t.ok(paths['/api/ai-companion/initialize'].post.requestBody)
})
