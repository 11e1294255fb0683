import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { startServer } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * Session-creation floods and the memory budget (issue 15, items 3 and 4):
 * a per-address creation rate, per-address shares of the budget, and every
 * write counted against it. Other client addresses are other loopback
 * addresses (127.0.0.x).
 */

const persona = { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'friend' }
const ATTACKER = { localAddress: '127.0.0.2' }

/** The victim: a companion session and an empty room with history, both from 127.0.0.1. */
async function victimSessions (t: Test, url: string) {
  const response = await fetch(`${url}/api/ai-companion/initialize`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ companionConfig: persona })
  })
  t.equal(response.status, 200)
  const { sessionId } = await response.json() as { sessionId: string }
  const victim = await TestClient.connect(t, url)
  await victim.join('victim-room', 'Vic')
  victim.send('chat message', { sessionId: 'victim-room', text: 'remember this' }, 'm')
  t.same(await victim.next(), { event: 'ack', data: { id: 'm' } })
  victim.ws.close()
  await victim.closed
  return sessionId
}

/** The attack: connect, join `perConnection` random codes, close, repeat; returns the error codes it got. */
async function joinFlood (t: Parameters<typeof victimSessions>[0], url: string, connections: number, perConnection = 10): Promise<string[]> {
  const errors: string[] = []
  for (let c = 0; c < connections; c++) {
    const attacker = await TestClient.connect(t, url, ATTACKER)
    for (let j = 0; j < perConnection; j++) attacker.send('join-session', { sessionId: randomBytes(8).toString('hex'), playerName: 'X' })
    let answered = 0
    while (answered < perConnection) {
      const envelope = await attacker.next()
      if (envelope.event === 'session-joined' || envelope.event === 'error') answered++
      if (envelope.event === 'error') errors.push(envelope.data.code)
    }
    attacker.ws.close()
    await attacker.closed
  }
  return errors
}

/** The victim's sessions are still there, the room with its history. */
async function assertVictimSurvived (t: Parameters<typeof victimSessions>[0], url: string, companionId: string) {
  t.equal((await fetch(`${url}/api/sessions/${companionId}`)).status, 200, 'the victim\'s companion session survived')
  const back = await TestClient.connect(t, url)
  const joined = await back.join('victim-room', 'Vic')
  t.same(joined.history.map((event: { data: { text: string } }) => event.data.text), ['remember this'], 'and the room with its history')
}

t.test('joining random codes in a loop: past SESSION_CREATE_RATE the attacker gets RATE_LIMITED; the victim keeps everything', async (t) => {
  const { url } = await startServer(t, { SESSION_MEMORY_MB: 1, SESSION_CREATE_RATE: 25 })
  const companionId = await victimSessions(t, url)
  const errors = await joinFlood(t, url, 5)
  t.equal(errors.length, 50 - 25, 'every join past the 25th refused')
  t.same([...new Set(errors)], ['RATE_LIMITED'])

  const attacker = await TestClient.connect(t, url, ATTACKER)
  attacker.send('join-session', { sessionId: 'one-more' }, 'j')
  t.same(await attacker.next(), { event: 'error', data: { message: 'Too many requests, retry after 60 s', code: 'RATE_LIMITED', retryAfter: 60, id: 'j' } })
  attacker.send('join-session', { sessionId: 'victim-room', playerName: 'Nosy' }, 'k')
  t.equal((await attacker.take(3)).at(-1)?.event, 'ack', 'joining an existing session creates nothing and is not limited')
  await assertVictimSurvived(t, url, companionId)
})

t.test('the creation rate covers companion sessions too (429 with Retry-After)', async (t) => {
  const { app } = await startServer(t, { SESSION_CREATE_RATE: 3, AI_RATE_LIMIT_MAX: 100 })
  const initialize = (remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig: persona }, remoteAddress })
  for (let i = 0; i < 3; i++) t.equal((await initialize('10.0.0.1')).statusCode, 200)
  const refused = await initialize('10.0.0.1')
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['retry-after'], '60')
  t.same(refused.json(), { error: 'Too many requests, retry after 60 s', code: 'RATE_LIMITED', statusCode: 429, retryAfter: 60 })
  const chat = await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { message: 'hi', sessionId: 'gone', companionConfig: persona }, remoteAddress: '10.0.0.1' })
  t.equal(chat.statusCode, 429, 'a chat that would re-create its session is a creation too')
  t.equal((await initialize('10.0.0.2')).statusCode, 200, 'another address has its own count')
})

t.test('past its share of SESSION_MEMORY_MB an address evicts only its own sessions, never the victim\'s', async (t) => {
  const { app, url } = await startServer(t, { SESSION_MEMORY_MB: 1, SESSION_CREATE_RATE: 100000, WS_MESSAGE_RATE: 1000, WS_UPGRADE_RATE: 100000 })
  const companionId = await victimSessions(t, url)
  // About 560 bytes per empty room: 2,000 of them are over the whole 1 MiB budget.
  const errors = await joinFlood(t, url, 200)
  t.same(errors, [], 'no refusal: the attacker churns through its own share')
  await assertVictimSurvived(t, url, companionId)
  const { multiplayer } = await app.sessions.counts()
  t.ok(multiplayer < 250, `the attacker keeps only its share: ${multiplayer} rooms`)
})

t.test('SESSION_MEMORY_MB=1: filling joined sessions with answers stops at the budget with SESSION_FULL', async (t) => {
  const { app, url } = await startServer(t, { SESSION_MEMORY_MB: 1, WS_MESSAGE_RATE: 100000, WS_FRAME_RATE: 100000, WS_BYTE_RATE: 1 << 30 })
  const budget = 1024 * 1024
  const clients = await Promise.all(Array.from({ length: 2 }, (_, i) => TestClient.connect(t, url, { localAddress: `127.0.0.${10 + i}` })))
  const rooms = Array.from({ length: 10 }, (_, i) => `full-${i}`)
  for (const client of clients) for (const room of rooms) await client.join(room, 'P'.repeat(50))
  for (let i = 0; i < rooms.length; i++) await clients[0].next() // the second client's user-joined
  let refusal: any
  let answers = 0
  for (let i = 0; refusal === undefined && i < 2000; i++) {
    const room = rooms[i % rooms.length]
    clients[1].send('question-answer', { sessionId: room, question: 'q'.repeat(1000), answer: 'a'.repeat(2000) }, `a${i}`)
    for (;;) {
      const envelope = await clients[1].next()
      if (envelope.event === 'error') refusal = envelope
      if (envelope.event === 'ack' || envelope.event === 'error') break
    }
    if (refusal === undefined) answers++
    t.ok((app.sessions as unknown as { bytes: number }).bytes <= budget, `after answer ${i}`)
  }
  t.same(refusal, { event: 'error', data: { message: 'The server is at capacity: this message cannot be stored right now', code: 'SESSION_FULL', id: `a${answers}` } })
  t.ok(answers > 100 && answers < 500, `${answers} answers stored before the budget was reached`)
  clients[1].send('question-answer', { sessionId: rooms[0], question: 'q'.repeat(1000), answer: 'a'.repeat(2000) }, 'again')
  t.match(await clients[1].next(), { event: 'error', data: { code: 'SESSION_FULL', id: 'again' } })
  t.equal(clients[1].ws.readyState, clients[1].ws.OPEN, 'the connection stays open')
})
