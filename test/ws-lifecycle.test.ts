import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { spawnServer, startServer, until } from './helper.js'
import { TestClient, rawExchange, upgradeRequestLines } from './ws-client.js'

/* SPEC §3, §9, §10: shutdown closes with 1001, sessions outlive short absences, logs keep no text. */

t.test('closing the app closes every connection with 1001', async (t) => {
  const { app, url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('bye', 'Sam')
  await app.close()
  t.same(await a.closed, { code: 1001, reason: 'server shutting down' })
  t.same(await b.closed, { code: 1001, reason: 'server shutting down' })
})

t.test('a peer that never answers the close frame does not hold the shutdown', async (t) => {
  const { app, port } = await startServer(t, { SHUTDOWN_TIMEOUT_MS: 1000 })
  const silent = await rawExchange(t, port, `${upgradeRequestLines(port).join('\r\n')}\r\n\r\n`)
  await until(() => silent.received().includes('"connected"'), 5000, 'the connected event')
  silent.socket.pause()
  const started = Date.now()
  await app.close()
  const elapsed = Date.now() - started
  // ws cuts it after half of SHUTDOWN_TIMEOUT_MS (a margin below for an early
  // timer); the upper bound is loose: it only says the peer did not hold it.
  t.ok(elapsed >= 400 && elapsed < 10_000, `closed after ${elapsed} ms`)
})

t.test('SIGTERM: clients see 1001, the process exits 0', async (t) => {
  const server = await spawnServer(t)
  const url = await server.url
  const a = await TestClient.connect(t, url)
  await a.join('term', 'Sam')
  server.child.kill('SIGTERM')
  t.same(await a.closed, { code: 1001, reason: 'server shutting down' })
  t.equal(await server.exited, 0)
})

t.test('an empty session survives a short absence and expires SESSION_TTL_MS after its last activity', async (t) => {
  const ttlMs = 2000
  const { app, url } = await startServer(t, { SESSION_TTL_MS: ttlMs })
  const status = async (id: string) => (await app.inject({ method: 'GET', url: `/api/sessions/${id}` })).statusCode

  const a = await TestClient.connect(t, url)
  await a.join('brief', 'Sam')
  a.send('chat message', { sessionId: 'brief', text: 'remember me' }, 'm')
  t.same(await a.next(), { event: 'ack', data: { id: 'm', seq: 1 } })
  // Connected people keep a session alive however quiet they are.
  await sleep(ttlMs + 100)
  t.equal(await status('brief'), 200)
  a.ws.close()
  await a.closed

  // Back at once: well within the TTL however loaded the machine is.
  const back = await TestClient.connect(t, url)
  const { history } = await back.join('brief', 'Sam')
  t.match(history, [{ event: 'chat message', data: { text: 'remember me' } }])
  back.ws.close()
  await back.closed
  const leftAt = Date.now()

  await until(async () => await status('brief') === 404, 10_000, 'the empty session to expire')
  // A margin below for an early timer: it must not expire before its TTL.
  t.ok(Date.now() - leftAt >= ttlMs - 100, `expired ${Date.now() - leftAt} ms after the last person left`)
  const late = await TestClient.connect(t, url)
  t.same((await late.join('brief', 'Sam')).history, [], 'a new session under the same code')
})

async function allLogText (dir: string): Promise<string> {
  let text = ''
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) text += await readFile(join(entry.parentPath, entry.name), 'utf8')
  }
  return text
}

t.test('no message text reaches any log file', async (t) => {
  const { app, url } = await startServer(t, { WS_MESSAGE_RATE: 2, WS_MESSAGE_WINDOW_MS: 60000 })
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('quiet', 'Sam')
  await b.join('quiet', 'Alex')
  a.send('chat message', { sessionId: 'quiet', text: 'SECRET-CHAT-TEXT' })
  t.equal((await b.next()).data.text, 'SECRET-CHAT-TEXT')
  a.send('ask-question', { sessionId: 'quiet', question: 'SECRET-QUESTION' })
  a.send('chat message', { sessionId: 'quiet', text: 'SECRET-FLOOD' })
  t.same((await a.take(3)).map((e) => e.data.code ?? e.event), ['user-joined', 'RATE_LIMITED', 'RATE_LIMITED'])
  b.ws.send(Buffer.from('{"text":"SECRET-BAD-UTF8\xff"}', 'latin1'), { binary: false })
  t.equal((await b.closed).code, 1007)
  await app.close()

  const logs = await allLogText(app.config.LOG_DIR)
  t.match(logs, /websocket protocol error/, 'the protocol error was logged')
  t.notMatch(logs, /SECRET/)
})
