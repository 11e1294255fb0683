import t from 'tap'
import { Errors } from '../src/errors.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import type { SessionStore } from '../src/services/sessions/store.js'
import { NO_LIMITS, persona, readLog, startServer } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * A session store that fails, through buildApp's real plugin order (its
 * `sessionStore` option): every route and the WebSocket chat answer
 * STORE_UNAVAILABLE, never a 500, and work again once the store is back.
 */

/**
 * A memory store that, while `down`, fails every call (close excepted) as an
 * unreachable shared store would; a proxy, so it follows the interface as it grows.
 */
function createOutageStore (): { store: SessionStore, outage: { down: boolean } } {
  const memory = createMemorySessionStore({ ttlMs: 60_000 })
  const outage = { down: false }
  const store = new Proxy(memory, {
    get (target, name, receiver) {
      const value = Reflect.get(target, name, receiver)
      if (typeof value !== 'function' || name === 'close') return value
      return async (...args: unknown[]) => {
        if (outage.down) throw new Errors.STORE_UNAVAILABLE()
        return value.apply(target, args)
      }
    }
  }) as SessionStore
  return { store, outage }
}

const UNAVAILABLE = { error: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', statusCode: 503 }

t.test('a failing session store: 503 STORE_UNAVAILABLE on HTTP, an error event on WebSocket, recovery after', async (t) => {
  const { store, outage } = createOutageStore()
  t.teardown(() => store.close()) // ours: the app does not close a store it was given
  const { app, url } = await startServer(t, NO_LIMITS, undefined, { sessionStore: store })
  t.equal(app.sessions, store, 'the app uses the given store')
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  const sam = await TestClient.connect(t, url)
  await sam.join('date', 'Sam')
  const { sessionId } = await (await post('/api/ai-companion/initialize', { companionConfig: persona })).json() as { sessionId: string }

  outage.down = true
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

  outage.down = false
  t.equal((await fetch(`${url}/api/sessions/${sessionId}`)).status, 200, 'back once the store is')
  sam.send('chat message', { sessionId: 'date', text: 'hello again' }, 'c2')
  t.same(await sam.next(), { event: 'ack', data: { id: 'c2', seq: 1 } })

  await app.close()
  const requests = await readLog(app.config.LOG_DIR, 'requests')
  t.same(requests.filter((line) => line.status === 500), [], 'never a 500')
})
