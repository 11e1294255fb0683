import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { WebSocket } from 'ws'
import { loadConfig } from '../src/config.js'
import { spawnServer, startServer } from './helper.js'
import { startRedis, type RedisServer } from './redis-server.js'
import { TestClient } from './ws-client.js'

/*
 * SPEC §9 outages against a real redis-server: frozen (SIGSTOP) and killed,
 * an instance booted while Redis is down, an instance killed without a
 * goodbye, and a graceful shutdown. Every instance is the whole app; the
 * processes that must die for real are real child processes.
 */

const companionConfig = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: 'female', role: 'girlfriend' }

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

const uniquePrefix = () => `o${randomUUID().slice(0, 8)}:`

/** A request from client `ip` (TRUST_PROXY=true believes X-Forwarded-For), timed. */
async function call (base: string, path: string, { ip = `203.0.113.${Math.floor(Math.random() * 250) + 1}`, method = 'GET', body }: { ip?: string, method?: string, body?: unknown } = {}) {
  const started = Date.now()
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'x-forwarded-for': ip, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text), ms: Date.now() - started }
}

/** Polls `path` until it answers `status`; returns how long that took. */
async function waitForStatus (base: string, path: string, status: number, timeoutMs: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    const response = await fetch(`${base}${path}`).catch(() => undefined)
    if (response?.status === status) return Date.now() - started
    if (Date.now() - started > timeoutMs) throw new Error(`${path} did not answer ${status} within ${timeoutMs} ms (last: ${response?.status})`)
    await sleep(50)
  }
}

/** Joins with generous timeouts: three server processes share a busy machine here. */
async function joined (t: Test, url: string, room: string, playerName: string): Promise<TestClient> {
  const client = new TestClient(new WebSocket(`${url.replace(/^http/, 'ws')}/ws`))
  t.teardown(() => client.ws.terminate())
  t.match(await client.next(10_000), { event: 'connected' })
  client.send('join-session', { sessionId: room, playerName })
  t.match(await client.next(10_000), { event: 'session-joined' })
  t.match(await client.next(10_000), { event: 'user-joined', data: { playerName } })
  return client
}

/** The names GET /api/sessions/:id lists (each read prunes lapsed presence). */
async function participantsOf (base: string, room: string): Promise<string[]> {
  return (await call(base, `/api/sessions/${room}`)).body.participants
}

/** Polls the participants until `count` are listed (or `timeoutMs`); returns them and how long that took. */
async function awaitParticipants (base: string, room: string, count: number, timeoutMs: number): Promise<{ participants: string[], ms: number }> {
  const started = Date.now()
  let participants = await participantsOf(base, room)
  while (participants.length !== count && Date.now() - started < timeoutMs) {
    await sleep(50)
    participants = await participantsOf(base, room)
  }
  return { participants, ms: Date.now() - started }
}

/** Freezes a child server (SIGSTOP) until the returned function or the test's end continues it. */
function stall (t: Test, child: { kill: (signal: NodeJS.Signals) => boolean }): () => void {
  child.kill('SIGSTOP')
  const resume = () => { child.kill('SIGCONT') }
  t.teardown(resume)
  return resume
}

/** Sends a chat message and returns the event answering it (`ack` or `error`). */
async function chat (client: TestClient, sessionId: string, text: string) {
  const id = randomUUID()
  client.send('chat message', { sessionId, text }, id)
  for (;;) {
    const envelope = await client.next(5000)
    if (envelope.data?.id === id) return envelope
  }
}

t.test('Redis frozen, then killed: 503s and STORE_UNAVAILABLE at once, limits fail open; afterwards everything works on the same process', async (t) => {
  const { url, app } = await startServer(t, {
    REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix(), TRUST_PROXY: 'true', RATE_LIMIT_MAX: 5, AI_RATE_LIMIT_MAX: 1000, SLOW_DOWN_AFTER: 4, SLOW_DOWN_DELAY_MS: 50
  })
  const limited = '198.51.100.1'
  const created = await call(url, '/api/ai-companion/initialize', { method: 'POST', body: { companionConfig } })
  t.equal(created.status, 200)
  const sessionId: string = created.body.sessionId
  const room = `room-${randomUUID()}`
  const client = await TestClient.connect(t, url)
  await client.join(room, 'Sam')
  t.match(await chat(client, room, 'before'), { event: 'ack' })
  for (let i = 0; i < 5; i++) await call(url, '/api/sessions/none', { ip: limited })
  t.equal((await call(url, '/api/sessions/none', { ip: limited })).status, 429, 'the limited client has used its 5')

  async function duringOutage (what: string, detectedWithinMs: number) {
    const first = await call(url, `/api/sessions/${sessionId}`)
    t.equal(first.status, 503, `${what}: a session call right away is refused`)
    t.same(first.body, { error: 'Session storage is temporarily unavailable', code: 'STORE_UNAVAILABLE', statusCode: 503 })
    t.ok(first.ms < 2000, `${what}: answered in ${first.ms} ms, not hung`)
    const readyIn = await waitForStatus(url, '/health/ready', 503, detectedWithinMs)
    t.pass(`${what}: readiness 503 after ${readyIn} ms more`)
    t.same((await call(url, '/health/ready')).body, { status: 'redis-down' })
    const health = await call(url, '/health')
    t.equal(health.status, 503)
    t.match(health.body, { status: 'unhealthy', checks: { redis: 'down' } })
    t.equal(app.redis?.state, 'down')

    const later = await Promise.all([
      call(url, `/api/sessions/${sessionId}`),
      call(url, `/api/sessions/${sessionId}`, { method: 'DELETE' }),
      call(url, '/api/ai-companion/initialize', { method: 'POST', body: { companionConfig } }),
      call(url, '/api/ai-companion/chat', { method: 'POST', body: { sessionId, message: 'are you there?' } })
    ])
    t.same(later.map((response) => [response.status, response.body.code]), Array(4).fill([503, 'STORE_UNAVAILABLE']), `${what}: every session operation`)
    for (const response of later) t.ok(response.ms < 1000, `${what}: refused in ${response.ms} ms`)
    const limitedNow = await call(url, '/api/sessions/none', { ip: limited })
    t.same([limitedNow.status, limitedNow.body.code], [503, 'STORE_UNAVAILABLE'], `${what}: the rate limit fails open (not 429)`)
    t.ok(limitedNow.ms < 1000, `${what}: and does not wait (${limitedNow.ms} ms)`)

    t.match(await chat(client, room, 'during'), { event: 'error', data: { code: 'STORE_UNAVAILABLE' } }, `${what}: WebSocket events get STORE_UNAVAILABLE`)
    t.match(await chat(client, room, 'during, again'), { event: 'error', data: { code: 'STORE_UNAVAILABLE' } })
    t.equal(client.ws.readyState, WebSocket.OPEN, `${what}: the connection stays open`)
    t.equal((await call(url, '/health/live')).status, 200, `${what}: live all along`)
  }

  redis.pause()
  await duringOutage('frozen', 3000)
  redis.resume()
  const back = await waitForStatus(url, '/health/ready', 200, 10_000)
  t.pass(`ready again ${back} ms after Redis resumed`)
  t.match((await call(url, `/api/sessions/${sessionId}`)).body, { sessionId, kind: 'companion' }, 'the session is still there')
  t.match(await chat(client, room, 'after'), { event: 'ack' }, 'the same WebSocket connection chats again')
  t.equal((await call(url, '/api/sessions/none', { ip: limited })).status, 429, 'the counters are back, and remembered')
  t.match((await call(url, '/health')).body, { checks: { redis: 'ok' } })

  await redis.kill()
  await duringOutage('killed', 2000)
  await redis.start() // empty: no persistence
  await waitForStatus(url, '/health/ready', 200, 10_000)
  t.match((await call(url, `/api/sessions/${sessionId}`)), { status: 404, body: { code: 'SESSION_NOT_FOUND' } }, 'a Redis restarted empty lost its sessions')
  t.match(await chat(client, room, 'lost room'), { event: 'error', data: { code: 'NOT_IN_SESSION' } }, 'and its rooms: join again')
  client.send('leave-session', { sessionId: room }, 'leave')
  t.match(await client.next(), { event: 'error', data: { id: 'leave', code: 'NOT_IN_SESSION' } }, 'a session that ended is left already')
  await client.join(room, 'Sam')
  t.match(await chat(client, room, 'rejoined'), { event: 'ack' })
  t.equal((await call(url, '/api/ai-companion/initialize', { method: 'POST', body: { companionConfig } })).status, 200, 'new sessions work')
  t.equal((await call(url, '/api/sessions/none', { ip: limited })).status, 404, 'fresh counters')
})

t.test('an instance booted while Redis is down starts, is live, unready, and becomes ready by itself', async (t) => {
  const later = await startRedis(t)
  await later.kill()
  const server = await spawnServer(t, { REDIS_URL: later.url, LOG_LEVEL: 'info' })
  const url = await server.url
  t.equal((await call(url, '/health/live')).status, 200)
  t.same(await call(url, '/health/ready').then((r) => [r.status, r.body]), [503, { status: 'redis-down' }])
  t.match(await call(url, '/health'), { status: 503, body: { checks: { redis: 'down' } } })
  t.match(server.stdout(), '"msg":"redis unreachable at startup: starting anyway, not ready until it answers"')
  t.notMatch(server.stdout() + server.stderr(), /\[ioredis\]|Unhandled error/, 'no console noise per reconnect attempt')
  await later.start()
  const readyIn = await waitForStatus(url, '/health/ready', 200, 10_000)
  t.pass(`ready ${readyIn} ms after Redis started (backoff at most 5 s)`)
  t.equal((await call(url, '/api/ai-companion/initialize', { method: 'POST', body: { companionConfig } })).status, 200)
  t.match(server.stdout(), '"msg":"redis connected"')
})

t.test('the participants of a killed instance are dropped within REDIS_PRESENCE_TTL_MS; a graceful one says goodbye and closes Redis', async (t) => {
  const prefix = uniquePrefix()
  // 5 s commands: this test is about presence, and three servers share a busy machine.
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, REDIS_PRESENCE_TTL_MS: '1000', REDIS_COMMAND_TIMEOUT_MS: '5000' }
  const doomed = await spawnServer(t, env)
  const graceful = await spawnServer(t, env)
  const { url: survivor } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  await joined(t, await doomed.url, room, 'Doomed')
  await joined(t, await graceful.url, room, 'Graceful')
  const alex = await joined(t, survivor, room, 'Alex')
  t.match((await call(survivor, `/api/sessions/${room}`)).body, { participantCount: 3, participants: ['Doomed', 'Graceful', 'Alex'] })
  const { instanceId } = (await call(await graceful.url, '/health')).body
  const connectionsOf = async (id: string) => (await redis.command('CLIENT', 'LIST')).split('\n')
    .map((line) => /name=(\S*)/.exec(line)?.[1]).filter((name) => name?.startsWith(`lovers-code:${id}:`)).sort()
  t.same(await connectionsOf(instanceId), [`lovers-code:${instanceId}:commands`, `lovers-code:${instanceId}:fanout`, `lovers-code:${instanceId}:health`], 'named connections: commands, the blocking fan-out reader, the health probe')

  graceful.child.kill('SIGTERM')
  t.equal(await graceful.exited, 0)
  t.match((await call(survivor, `/api/sessions/${room}`)).body, { participants: ['Doomed', 'Alex'] }, 'a graceful shutdown leaves at once')
  t.same(await connectionsOf(instanceId), [], 'and closes its Redis connections')

  doomed.child.kill('SIGKILL')
  await doomed.exited
  const { participants, ms } = await awaitParticipants(survivor, room, 1, 10_000)
  t.same(participants, ['Alex'], `the killed instance's participant is dropped after ${ms} ms`)
  t.ok(ms < 4000, 'within the presence TTL (1 s) and a margin')
  t.match(await chat(alex, room, 'still here'), { event: 'ack' })
})

t.test('a connection closed while Redis is frozen leaves every session it was in: its instance vouches for it in none', async (t) => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix(), REDIS_PRESENCE_TTL_MS: '1000' }
  const { url: a } = await startServer(t, env)
  const { url: b } = await startServer(t, env)
  const [first, second] = [`room-${randomUUID()}`, `room-${randomUUID()}`]
  const leaving = await TestClient.connect(t, a)
  await leaving.join(first, 'Mia')
  await leaving.join(second, 'Mia')
  await joined(t, b, second, 'Olly')
  t.match((await call(b, `/api/sessions/${second}`)).body, { participants: ['Mia', 'Olly'] })

  redis.pause()
  leaving.ws.close()
  // Both goodbyes are sent into the frozen Redis and time out (REDIS_COMMAND_TIMEOUT_MS).
  await sleep(1500)
  redis.resume()
  await waitForStatus(a, '/health/ready', 200, 10_000)

  // Three presence TTLs with nothing else touching the rooms: an instance
  // still vouching for Mia would have renewed her presence several times.
  await sleep(3000)
  const participants = await Promise.all([first, second].map(async (room) => await participantsOf(b, room)))
  t.same(participants, [[], ['Olly']], 'Mia is gone from both sessions')
})

t.test('Redis restarted empty: members join again under the same code and get the new session\'s messages from seq 1', async (t) => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix() }
  const { url: a } = await startServer(t, env)
  const { url: b } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  const alex = await TestClient.connect(t, a)
  await alex.join(room, 'Alex')
  const blair = await TestClient.connect(t, b)
  await blair.join(room, 'Blair')
  t.match(await alex.next(5000), { event: 'user-joined', data: { playerName: 'Blair' } })
  for (let seq = 1; seq <= 5; seq++) t.match(await chat(blair, room, `old ${seq}`), { event: 'ack', data: { seq } })
  t.same((await alex.take(5, 5000)).map(({ data }) => data.seq), [1, 2, 3, 4, 5])

  await redis.kill()
  await redis.start()
  await Promise.all([a, b].map((url) => waitForStatus(url, '/health/ready', 200, 10_000)))

  // SPEC §9: the session is gone; a sender learns it from NOT_IN_SESSION and joins again.
  t.match(await chat(alex, room, 'anyone?'), { event: 'error', data: { code: 'NOT_IN_SESSION' } })
  t.match(await alex.join(room, 'Alex'), { history: [], participants: [{ playerName: 'Alex' }] }, 'a new session under the same code')
  // Blair was not told (it sent nothing): joining again is a first join into the new session too.
  t.match(await blair.join(room, 'Blair'), { history: [], participants: [{ playerName: 'Alex' }, { playerName: 'Blair' }] })
  t.match(await alex.next(5000), { event: 'user-joined', data: { playerName: 'Blair' } })
  for (let seq = 1; seq <= 3; seq++) t.match(await chat(blair, room, `new ${seq}`), { event: 'ack', data: { seq } })
  t.same((await alex.take(3, 5000)).map(({ event, data }) => [event, data.seq, data.text]),
    [['chat message', 1, 'new 1'], ['chat message', 2, 'new 2'], ['chat message', 3, 'new 3']],
    'the new session\'s seqs 1–3, though the old one had reached 5 on this instance')
})

t.test('Redis restarted empty, another instance back first: the instance that held the old session gives the new one every seq, and no ghosts', async (t) => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix(), REDIS_PRESENCE_TTL_MS: '1000' }
  const held = await spawnServer(t, env)
  const a = await held.url
  const { url: b } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  const seqsOf = async (client: TestClient, count: number) => (await client.take(count, 5000)).map(({ event, data }) => `${event} ${data.seq}`)
  /**
   * The next chat message's seq, past presence frames: presence has no seq
   * and no order relative to messages (a reader catching up after the
   * restart may hand a joiner a `user-joined` it held during the join).
   */
  const nextChat = async (client: TestClient) => {
    for (;;) {
      const { event, data } = await client.next(5000)
      if (event === 'chat message') return data.seq
    }
  }
  const alex = await TestClient.connect(t, a)
  await alex.join(room, 'Alex')
  const ari = await TestClient.connect(t, a)
  await ari.join(room, 'Ari')
  const blair = await TestClient.connect(t, b)
  await blair.join(room, 'Blair')
  for (let seq = 1; seq <= 5; seq++) t.match(await chat(blair, room, `old ${seq}`), { event: 'ack', data: { seq } })
  t.same(await seqsOf(alex, 7), ['user-joined undefined', 'user-joined undefined', 'chat message 1', 'chat message 2', 'chat message 3', 'chat message 4', 'chat message 5'])
  t.same(await seqsOf(ari, 6), ['user-joined undefined', 'chat message 1', 'chat message 2', 'chat message 3', 'chat message 4', 'chat message 5'])

  // A is stalled through the restart: B starts the new session and writes a new stream before A's reader is back.
  const resume = stall(t, held.child)
  await redis.kill()
  await redis.start()
  await waitForStatus(b, '/health/ready', 200, 10_000)
  t.match(await blair.join(room, 'Blair'), { history: [], participants: [{ playerName: 'Blair' }] })
  for (let seq = 1; seq <= 2; seq++) t.match(await chat(blair, room, `new ${seq}`), { event: 'ack', data: { seq } })
  resume()
  await waitForStatus(a, '/health/ready', 200, 10_000)
  const casey = await TestClient.connect(t, a)
  t.match(await casey.join(room, 'Casey'), { history: [{ data: { seq: 1 } }, { data: { seq: 2 } }] })
  t.match(await blair.next(5000), { event: 'user-joined', data: { playerName: 'Casey' } })
  for (let seq = 3; seq <= 5; seq++) t.match(await chat(blair, room, `new ${seq}`), { event: 'ack', data: { seq } })
  t.same([await nextChat(casey), await nextChat(casey), await nextChat(casey)], [3, 4, 5], 'seqs 3–5 of the new session, though A had delivered up to 5 of the old one')

  t.equal(alex.pending + ari.pending, 0, 'the old session\'s members on A get nothing of the new one')
  await sleep(1500) // more than a presence TTL: A's renewals have run
  t.same(await participantsOf(b, room), ['Blair', 'Casey'], 'and A does not vouch for them in it')

  // Both join again at once: each is a first join.
  alex.send('join-session', { sessionId: room, playerName: 'Alex' })
  ari.send('join-session', { sessionId: room, playerName: 'Ari' })
  for (const client of [alex, ari]) t.match(await client.next(5000), { event: 'session-joined', data: { history: [{}, {}, {}, {}, {}] } })
  for (const seq of [6, 7]) {
    t.match(await chat(blair, room, `new ${seq}`), { event: 'ack', data: { seq } })
    t.same(await Promise.all([alex, ari, casey].map(nextChat)), [seq, seq, seq], `seq ${seq}, once, on A`)
  }
  t.same((await participantsOf(b, room)).sort(), ['Alex', 'Ari', 'Blair', 'Casey'])
})

t.test('Redis restarted while the replay cannot read the sessions yet: the reader tries again, and the old session ends', async (t) => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix() }
  const held = await spawnServer(t, env)
  const a = await held.url
  const { url: b } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  const alex = await joined(t, a, room, 'Alex')
  const blair = await joined(t, b, room, 'Blair')
  for (let seq = 1; seq <= 3; seq++) t.match(await chat(blair, room, `old ${seq}`), { event: 'ack', data: { seq } })
  t.same((await alex.take(4, 5000)).map(({ event, data }) => `${event} ${data.seq}`), ['user-joined undefined', 'chat message 1', 'chat message 2', 'chat message 3'])

  const resume = stall(t, held.child)
  await redis.kill()
  await redis.start()
  await waitForStatus(b, '/health/ready', 200, 10_000)
  t.match(await blair.join(room, 'Blair'), { history: [] })
  // Scripts (the store's reads too) wait while INFO and the stream reads go on: A's reader sees the restart but cannot replay.
  await redis.command('CLIENT', 'PAUSE', '2500', 'WRITE')
  resume()
  await sleep(3000)
  for (let seq = 1; seq <= 5; seq++) t.match(await chat(blair, room, `new ${seq}`), { event: 'ack', data: { seq } })
  t.match(await chat(alex, room, 'still here?'), { event: 'error', data: { code: 'NOT_IN_SESSION' } }, 'the old session ended on A')
  t.equal(alex.pending, 0, 'and A delivered nothing of the new one to it')
  t.match(held.stdout(), '"reason":"restarted"')
})

t.test('a Redis ACL that refuses INFO (@dangerous): the fan-out works, restarts told by the stream alone', async (t) => {
  t.match(await redis.command('ACL', 'SETUSER', 'limited', 'reset', 'on', '>secret', '~*', '&*', '+@all', '-@dangerous'), /OK/)
  t.teardown(() => redis.command('ACL', 'DELUSER', 'limited'))
  const env = { REDIS_URL: redis.url.replace('redis://', 'redis://limited:secret@'), REDIS_PREFIX: uniquePrefix() }
  const { url: a } = await startServer(t, env)
  const { url: b } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  const alex = await joined(t, a, room, 'Alex')
  const blair = await joined(t, b, room, 'Blair')
  t.match(await alex.next(5000), { event: 'user-joined', data: { playerName: 'Blair' } })
  t.match(await chat(blair, room, 'hello'), { event: 'ack', data: { seq: 1 } })
  t.match(await alex.next(5000), { event: 'chat message', data: { seq: 1, text: 'hello' } })
})

t.test('a member whose instance stalled past REDIS_PRESENCE_TTL_MS is dropped, and back once its instance vouches again', async (t) => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix(), REDIS_PRESENCE_TTL_MS: '1000', REDIS_COMMAND_TIMEOUT_MS: '5000' }
  const stalled = await spawnServer(t, env)
  const { url: survivor } = await startServer(t, env)
  const room = `room-${randomUUID()}`
  const alex = await joined(t, await stalled.url, room, 'Alex')
  await joined(t, survivor, room, 'Blair')

  const resume = stall(t, stalled.child)
  await sleep(2000)
  t.same(await participantsOf(survivor, room), ['Blair'], 'nobody vouched for Alex: dropped')
  resume()

  const { participants, ms } = await awaitParticipants(survivor, room, 2, 5000)
  t.same(participants, ['Blair', 'Alex'], `Alex, still connected, is back (last in join order) ${ms} ms after the process went on`)
  t.match(await chat(alex, room, 'back'), { event: 'ack' })
})

t.test('REDIS_PRESENCE_TTL_MS: 45 s by default, never more than the 60 s SPEC §9 allows', async (t) => {
  t.equal(loadConfig({}).REDIS_PRESENCE_TTL_MS, 45_000)
  t.ok(loadConfig({}).REDIS_PRESENCE_TTL_MS <= 60_000)
  t.equal(loadConfig({ REDIS_PRESENCE_TTL_MS: '60000' }).REDIS_PRESENCE_TTL_MS, 60_000)
  t.throws(() => loadConfig({ REDIS_PRESENCE_TTL_MS: '60001' }), { message: 'Invalid configuration: REDIS_PRESENCE_TTL_MS must be an integer from 300 to 60000' })
  t.equal(loadConfig({}).REDIS_PREFIX, 'lc:')
  t.equal(loadConfig({}).REDIS_COMMAND_TIMEOUT_MS, 1000, 'commands fail after about a second by default')
  t.throws(() => loadConfig({ REDIS_PREFIX: 'a b' }), { message: /REDIS_PREFIX must be a key prefix without spaces or braces/ })
})
