import t from 'tap'
import { Errors } from '../src/errors.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import type { ChatTurn, Participant, Persona, SessionEvent, SessionStore } from '../src/services/sessions/store.js'
import { NO_LIMITS, persona, readLog, startServer } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * A session store that fails, through buildApp's real plugin order (its
 * `sessionStore` option): every route and the WebSocket chat answer
 * STORE_UNAVAILABLE, never a 500, and work again once the store is back.
 */

/** A memory store that, while `down`, fails every call as an unreachable shared store would. */
class OutageStore implements SessionStore {
  down = false
  private readonly memory = createMemorySessionStore({ ttlMs: 60_000 })
  private async call<R> (work: () => Promise<R>): Promise<R> {
    if (this.down) throw new Errors.STORE_UNAVAILABLE()
    return await work()
  }

  get (id: string) { return this.call(() => this.memory.get(id)) }
  createCompanion (persona: Persona) { return this.call(() => this.memory.createCompanion(persona)) }
  appendTurns (id: string, turns: ChatTurn[], keep: number) { return this.call(() => this.memory.appendTurns(id, turns, keep)) }
  join (id: string, participant: Participant, maxParticipants: number) { return this.call(() => this.memory.join(id, participant, maxParticipants)) }
  leave (id: string, userId: string) { return this.call(() => this.memory.leave(id, userId)) }
  appendEvent (id: string, event: SessionEvent, keep: number) { return this.call(() => this.memory.appendEvent(id, event, keep)) }
  delete (id: string) { return this.call(() => this.memory.delete(id)) }
  counts () { return this.call(() => this.memory.counts()) }
  close () { return this.memory.close() }
}

const UNAVAILABLE = { error: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', statusCode: 503 }

t.test('a failing session store: 503 STORE_UNAVAILABLE on HTTP, an error event on WebSocket, recovery after', async (t) => {
  const store = new OutageStore()
  t.teardown(() => store.close()) // ours: the app does not close a store it was given
  const { app, url } = await startServer(t, NO_LIMITS, undefined, { sessionStore: store })
  t.equal(app.sessions, store, 'the app uses the given store')
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  const sam = await TestClient.connect(t, url)
  await sam.join('date', 'Sam')
  const { sessionId } = await (await post('/api/ai-companion/initialize', { companionConfig: persona })).json() as { sessionId: string }

  store.down = true
  for (const [what, response] of [
    ['initialize', await post('/api/ai-companion/initialize', { companionConfig: persona })],
    ['chat', await post('/api/ai-companion/chat', { sessionId, message: 'are you there?' })],
    ['GET session', await fetch(`${url}/api/sessions/${sessionId}`)],
    ['DELETE session', await fetch(`${url}/api/sessions/${sessionId}`, { method: 'DELETE' })]
  ] as const) {
    t.equal(response.status, 503, what)
    t.same(await response.json(), UNAVAILABLE, what)
  }
  sam.send('chat message', { sessionId: 'date', text: 'hello?' }, 'c1')
  t.same(await sam.next(), { event: 'error', data: { message: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', id: 'c1' } })
  t.equal(sam.ws.readyState, sam.ws.OPEN, 'the connection stays open')

  store.down = false
  t.equal((await fetch(`${url}/api/sessions/${sessionId}`)).status, 200, 'back once the store is')
  sam.send('chat message', { sessionId: 'date', text: 'hello again' }, 'c2')
  t.same(await sam.next(), { event: 'ack', data: { id: 'c2' } })

  await app.close()
  const requests = await readLog(app.config.LOG_DIR, 'requests')
  t.same(requests.filter((line) => line.status === 500), [], 'never a 500')
})
