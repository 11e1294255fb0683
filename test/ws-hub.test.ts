import { once } from 'node:events'
import t from 'tap'
import { WebSocketServer } from 'ws'
import { Errors } from '../src/errors.js'
import { createChatHub, type ChatHub, type ChatHubOptions, type Member } from '../src/services/chat/hub.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import type { Participant, Persona, RecordOptions, RecordResult, RequestRecord, SessionEvent, SessionStore, StoredTurn } from '../src/services/sessions/store.js'
import { createWsGateway } from '../src/services/chat/gateway.js'
import { localFanOut, type DeliverLocal, type LocalHub } from '../src/services/chat/fan-out.js'
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
  // Every instance delivers to its own members, as readers of a Redis stream would.
  const everyHub: DeliverLocal = (sessionId, frame, exceptUserId) => {
    for (const hub of hubs) hub.deliverLocal(sessionId, frame, exceptUserId)
  }
  const options = {
    store,
    maxParticipants: 10,
    fanOut: (hub: LocalHub) => localFanOut(store)({ ...hub, deliverLocal: everyHub }),
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

  t.equal(await hubs[1].chat(alex, 'date', 'across instances'), 1, 'the seq')
  const chat = {
    event: 'chat message',
    data: { sessionId: 'date', id: 'msg-1', text: 'across instances', sender: 'u-alex', playerName: 'Alex', timestamp: '2025-02-14T20:00:00.000Z', seq: 1 }
  }
  t.same(sam.frames(), [chat])
  t.same(alex.frames(), [])

  await hubs[0].disconnect(sam)
  t.same(alex.frames(), [{ event: 'user-left', data: { sessionId: 'date', userId: 'u-sam', playerName: 'Sam' } }])
  const session = await store.get('date')
  t.match(session, { kind: 'multiplayer', participants: [{ userId: 'u-alex' }] })
  t.same(session?.kind === 'multiplayer' && session.history, [JSON.stringify(chat)], 'kept as the frame delivered')
  await t.rejects(hubs[0].chat(sam, 'date', 'gone'), { code: 'NOT_IN_SESSION' })
})

t.test('a member who joins while frames are still on their way to this instance does not get what its history already had', async (t) => {
  const store = memoryStore(t)
  // Deliveries wait until the test lets them through: a stream reader a little behind.
  const onTheWay: Array<() => void> = []
  const hub = createChatHub({
    store,
    maxParticipants: 10,
    fanOut: (local: LocalHub) => localFanOut(store)({ ...local, deliverLocal: (...frame) => { onTheWay.push(() => local.deliverLocal(...frame)) } })
  })
  const [sam, alex, kim] = [member('u-sam'), member('u-alex'), member('u-kim')]
  await hub.join(sam, 'lag', 'Sam')
  await hub.join(alex, 'lag', 'Alex')
  for (const text of ['one', 'two']) await hub.chat(sam, 'lag', text)

  await hub.join(kim, 'lag', 'Kim')
  const joined = kim.frames()
  t.same(joined[0].data.history.map((event: any) => event.data.seq), [1, 2], 'the join\'s history has both')
  await hub.chat(sam, 'lag', 'three')
  for (const deliver of onTheWay.splice(0)) deliver()

  const chats = (frames: any[]) => frames.filter((frame) => frame.event === 'chat message').map((frame) => frame.data.seq)
  t.same(chats(alex.frames()), [1, 2, 3], 'a member from before gets all three')
  t.same(chats(kim.frames()), [3], 'the new one only what its history did not have')
})

/**
 * A second SessionStore for the test: a shared store (as Redis would be) that
 * is reachable for joins and reads but whose writes of messages fail with
 * `failure`. It implements the interface itself, delegating the calls that
 * work to a real memory store, rather than patching a method of ours.
 */
class WritesFailingStore implements SessionStore {
  /** What recording throws; undefined: it works again. */
  failure: Error | undefined = new Errors.STORE_UNAVAILABLE()
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

  async recordEvent (id: string, event: SessionEvent, options: RecordOptions): Promise<RecordResult | undefined> {
    if (this.failure !== undefined) throw this.failure
    return await this.reachable.recordEvent(id, event, options)
  }

  delete (id: string) { return this.reachable.delete(id) }
  counts () { return this.reachable.counts() }
  close () { return this.reachable.close() }
}

t.test('gateway: a store failure is an error event; an unexpected one is INTERNAL_ERROR and reported with context', async (t) => {
  const failing = new WritesFailingStore(memoryStore(t))
  const { gateway, url, reported } = await listen(t, { store: failing, maxParticipants: 10 })

  const [client, partner] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await client.join('flaky', 'Sam')
  await partner.join('flaky', 'Alex')
  t.equal((await client.next()).event, 'user-joined')
  client.send('chat message', { sessionId: 'flaky', text: 'hello' }, 'c1')
  t.same(await client.next(), {
    event: 'error', data: { message: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', id: 'c1' }
  })
  t.same(reported, [])

  failing.failure = new TypeError('socket hang up')
  client.send('chat message', { sessionId: 'flaky', text: 'hello' }, 'c2')
  t.same(await client.next(), { event: 'error', data: { message: 'Internal server error', code: 'INTERNAL_ERROR', id: 'c2' } })
  t.same(reported, [{ message: 'socket hang up', userId: client.userId, ip: '127.0.0.1' }])

  // Refused frames reached nobody: the partner's next frame is the first recorded one.
  failing.failure = undefined
  client.send('question-answer', { sessionId: 'flaky', answer: 'works again' }, 'c3')
  t.match(await partner.next(), { event: 'question-answered', data: { answer: 'works again', seq: 1 } })
  t.match(await client.next(), { event: 'question-answered', data: { seq: 1 } })
  t.same(await client.next(), { event: 'ack', data: { id: 'c3', seq: 1 } })
  t.equal(partner.pending, 0)

  gateway.closeAll()
  t.same(await client.closed, { code: 1001, reason: 'server shutting down' })
})

t.test('a store at capacity: joining a new session is SESSION_FULL with its own message, the connection stays open', async (t) => {
  // A session with two people and a message fits this budget (934 + a 590-byte frame); a second
  // session under a 64-character code does not (726 + 848).
  const store = memoryStore(t, 1550)
  const { url, reported } = await listen(t, { store, maxParticipants: 10 })
  const [sam, alex] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await sam.join('date', 'Sam')

  alex.send('join-session', { sessionId: 'elsewhere'.padEnd(64, '-'), playerName: 'Alex' }, 'j')
  t.same(await alex.next(), {
    event: 'error', data: { message: 'The server is at capacity: no new sessions can be joined right now', code: 'SESSION_FULL', id: 'j' }
  })
  t.same(await store.counts(), { companion: 0, multiplayer: 1 }, 'nothing was created')

  const joined = await alex.join('date', 'Alex')
  t.same(joined.participants.map((p: { playerName: string }) => p.playerName), ['Sam', 'Alex'], 'a session with people in it can still be joined')
  t.same(await sam.next(), { event: 'user-joined', data: { sessionId: 'date', userId: alex.userId, playerName: 'Alex' } })
  alex.send('chat message', { sessionId: 'date', text: 'still here' }, 'c')
  t.same(await alex.next(), { event: 'ack', data: { id: 'c', seq: 1 } })
  t.match(await sam.next(), { event: 'chat message', data: { text: 'still here', sender: alex.userId } })
  t.equal(alex.ws.readyState, alex.ws.OPEN)
  t.same(reported, [], 'a refusal, not a failure')
})
