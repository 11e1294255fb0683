import { once } from 'node:events'
import t from 'tap'
import { WebSocketServer } from 'ws'
import { Errors } from '../src/errors.js'
import { createChatHub, type ChatHub, type ChatHubOptions, type Member } from '../src/services/chat/hub.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import type { MultiplayerSession, Participant, Persona, RequestRecord, SessionStore, StoredTurn } from '../src/services/sessions/store.js'
import { createWsGateway } from '../src/services/chat/gateway.js'
import { TestClient } from './ws-client.js'

/* The hub and the gateway as plain services, without Fastify. */

function member (userId: string): Member & { frames: () => any[] } {
  const received: Buffer[] = []
  return { userId, deliver: (frame) => received.push(frame), frames: () => received.splice(0).map((frame) => JSON.parse(frame.toString())) }
}

type Test = { teardown: (fn: () => unknown) => void }

function memoryStore (t: Test, maxBytes?: number): SessionStore {
  const store = createMemorySessionStore({ ttlMs: 60_000, maxBytes })
  t.teardown(() => store.close())
  return store
}

/** A gateway over a hub on `store`, behind a plain ws server on a free port; returns its URL and what it reported. */
async function listen (t: Test, hubOptions: ChatHubOptions) {
  const reported: unknown[] = []
  const gateway = createWsGateway({
    hub: createChatHub(hubOptions),
    maxConnections: 10,
    maxConnectionsPerAddress: 10,
    messageRate: 100,
    messageWindowMs: 1000,
    maxBufferedBytes: 1 << 20,
    pingIntervalMs: 60_000,
    onError: (error, context) => reported.push({ message: error.message, ...context })
  })
  t.teardown(() => gateway.close())
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  server.on('connection', (socket, request) => gateway.accept(socket, request.socket.remoteAddress ?? ''))
  t.teardown(() => server.close())
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return { gateway, url: `http://127.0.0.1:${port}`, reported }
}

t.test('two hubs sharing a store and a publish bus behave as one (the shape of a Redis fan-out)', async (t) => {
  const store = memoryStore(t)
  let ids = 0
  const hubs: ChatHub[] = []
  const options = {
    store,
    maxParticipants: 10,
    // Every instance delivers to its own members, as Redis subscribers would.
    publish: (sessionId: string, frame: string, exceptUserId?: string) => {
      for (const hub of hubs) hub.deliverLocal(sessionId, frame, exceptUserId)
    },
    now: () => Date.UTC(2025, 1, 14, 20, 0, 0),
    newId: () => `msg-${++ids}`
  }
  hubs.push(createChatHub(options), createChatHub(options))
  const [sam, alex] = [member('u-sam'), member('u-alex')]

  await hubs[0].join(sam, 'date', 'Sam')
  await hubs[1].join(alex, 'date', 'Alex')
  t.same(sam.frames(), [
    { event: 'session-joined', data: { sessionId: 'date', userId: 'u-sam', participants: [{ userId: 'u-sam', playerName: 'Sam' }], history: [] } },
    { event: 'user-joined', data: { sessionId: 'date', userId: 'u-sam', playerName: 'Sam' } },
    { event: 'user-joined', data: { sessionId: 'date', userId: 'u-alex', playerName: 'Alex' } }
  ])
  t.same(alex.frames()[0].data.participants, [{ userId: 'u-sam', playerName: 'Sam' }, { userId: 'u-alex', playerName: 'Alex' }])

  await hubs[1].chat(alex, 'date', 'across instances')
  const chat = {
    event: 'chat message',
    data: { sessionId: 'date', id: 'msg-1', text: 'across instances', sender: 'u-alex', playerName: 'Alex', timestamp: '2025-02-14T20:00:00.000Z' }
  }
  t.same(sam.frames(), [chat])
  t.same(alex.frames(), [])

  await hubs[0].disconnect(sam)
  t.same(alex.frames(), [{ event: 'user-left', data: { sessionId: 'date', userId: 'u-sam', playerName: 'Sam' } }])
  const session = await store.get('date')
  t.match(session, { kind: 'multiplayer', participants: [{ userId: 'u-alex' }], history: [chat] })
  await t.rejects(hubs[0].chat(sam, 'date', 'gone'), { code: 'NOT_IN_SESSION' })
})

/**
 * A second SessionStore for the test: a shared store (as Redis would be) that
 * is reachable for joins and reads but whose writes of messages fail with
 * `failure`. It implements the interface itself, delegating the calls that
 * work to a real memory store, rather than patching a method of ours.
 */
class WritesFailingStore implements SessionStore {
  failure: Error = new Errors.STORE_UNAVAILABLE()
  constructor (private readonly reachable: SessionStore) {}
  get (id: string) { return this.reachable.get(id) }
  createCompanion (persona: Persona) { return this.reachable.createCompanion(persona) }
  appendTurns (id: string, turns: StoredTurn[], keep: number) { return this.reachable.appendTurns(id, turns, keep) }
  reviseReply (id: string, reply: StoredTurn, keep: number) { return this.reachable.reviseReply(id, reply, keep) }
  lockReply (id: string, token: string, ttlMs: number) { return this.reachable.lockReply(id, token, ttlMs) }
  unlockReply (id: string, token: string) { return this.reachable.unlockReply(id, token) }
  beginRequest (key: string, fingerprint: string, ttlMs: number) { return this.reachable.beginRequest(key, fingerprint, ttlMs) }
  endRequest (key: string, record: RequestRecord & { state: 'done' | 'failed' }, ttlMs: number) { return this.reachable.endRequest(key, record, ttlMs) }
  join (id: string, participant: Participant, maxParticipants: number) { return this.reachable.join(id, participant, maxParticipants) }
  leave (id: string, userId: string) { return this.reachable.leave(id, userId) }
  async appendEvent (): Promise<MultiplayerSession | undefined> { throw this.failure }
  delete (id: string) { return this.reachable.delete(id) }
  counts () { return this.reachable.counts() }
  close () { return this.reachable.close() }
}

t.test('gateway: a store failure is an error event; an unexpected one is INTERNAL_ERROR and reported with context', async (t) => {
  const failing = new WritesFailingStore(memoryStore(t))
  const { gateway, url, reported } = await listen(t, { store: failing, maxParticipants: 10 })

  const client = await TestClient.connect(t, url)
  await client.join('flaky', 'Sam')
  client.send('chat message', { sessionId: 'flaky', text: 'hello' }, 'c1')
  t.same(await client.next(), {
    event: 'error', data: { message: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', id: 'c1' }
  })
  t.same(reported, [])

  failing.failure = new TypeError('socket hang up')
  client.send('chat message', { sessionId: 'flaky', text: 'hello' }, 'c2')
  t.same(await client.next(), { event: 'error', data: { message: 'Internal server error', code: 'INTERNAL_ERROR', id: 'c2' } })
  t.same(reported, [{ message: 'socket hang up', userId: client.userId, ip: '127.0.0.1' }])

  gateway.closeAll()
  t.same(await client.closed, { code: 1001, reason: 'server shutting down' })
})

t.test('a store at capacity: joining a new session is SESSION_FULL with its own message, the connection stays open', async (t) => {
  // A session with two people and a message fits this budget; a second session does not.
  const store = memoryStore(t, 1350)
  const { url, reported } = await listen(t, { store, maxParticipants: 10 })
  const [sam, alex] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await sam.join('date', 'Sam')

  alex.send('join-session', { sessionId: 'elsewhere', playerName: 'Alex' }, 'j')
  t.same(await alex.next(), {
    event: 'error', data: { message: 'The server is at capacity: no new sessions can be joined right now', code: 'SESSION_FULL', id: 'j' }
  })
  t.same(await store.counts(), { companion: 0, multiplayer: 1 }, 'nothing was created')

  const joined = await alex.join('date', 'Alex')
  t.same(joined.participants.map((p: { playerName: string }) => p.playerName), ['Sam', 'Alex'], 'a session with people in it can still be joined')
  t.same(await sam.next(), { event: 'user-joined', data: { sessionId: 'date', userId: alex.userId, playerName: 'Alex' } })
  alex.send('chat message', { sessionId: 'date', text: 'still here' }, 'c')
  t.same(await alex.next(), { event: 'ack', data: { id: 'c' } })
  t.match(await sam.next(), { event: 'chat message', data: { text: 'still here', sender: alex.userId } })
  t.equal(alex.ws.readyState, alex.ws.OPEN)
  t.same(reported, [], 'a refusal, not a failure')
})
