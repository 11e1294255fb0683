import t from 'tap'
import { ISO, startServer } from './helper.js'
import { TestClient, clientFrame, rawExchange, serverFrames, upgradeRequestLines } from './ws-client.js'

/* SPEC §3: the envelope, every client event, who receives what, acks and history. */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('each connection is greeted with its own userId', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  t.match(a.userId, UUID)
  t.match(b.userId, UUID)
  t.not(a.userId, b.userId)
})

t.test('two participants: join, chat, questions, answers and leave reach exactly the right people', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)

  a.send('join-session', { sessionId: 'room-1', playerName: 'Sam' }, 'j1')
  t.same(await a.take(3), [
    { event: 'session-joined', data: { sessionId: 'room-1', userId: a.userId, participants: [{ userId: a.userId, playerName: 'Sam' }], history: [] } },
    { event: 'user-joined', data: { sessionId: 'room-1', userId: a.userId, playerName: 'Sam' } },
    { event: 'ack', data: { id: 'j1' } }
  ])

  b.send('join-session', { sessionId: 'room-1', playerName: 'Alex' }, 'j2')
  t.same(await b.take(3), [
    {
      event: 'session-joined',
      data: {
        sessionId: 'room-1',
        userId: b.userId,
        participants: [{ userId: a.userId, playerName: 'Sam' }, { userId: b.userId, playerName: 'Alex' }],
        history: []
      }
    },
    { event: 'user-joined', data: { sessionId: 'room-1', userId: b.userId, playerName: 'Alex' } },
    { event: 'ack', data: { id: 'j2' } }
  ])
  t.same(await a.next(), { event: 'user-joined', data: { sessionId: 'room-1', userId: b.userId, playerName: 'Alex' } })

  // The sender's next frame is its ack: its own chat message is not echoed.
  // A sender/playerName put in the message by the client is ignored.
  const before = Date.now()
  a.send('chat message', { sessionId: 'room-1', text: 'hello', timestamp: 12, sender: 'forged', playerName: 'Mallory' }, 'c1')
  t.same(await a.next(), { event: 'ack', data: { id: 'c1', seq: 1 } })
  const chat = await b.next()
  t.equal(chat.event, 'chat message')
  t.same(Object.keys(chat.data).sort(), ['id', 'playerName', 'sender', 'seq', 'sessionId', 'text', 'timestamp'])
  t.match(chat.data, { sessionId: 'room-1', text: 'hello', sender: a.userId, playerName: 'Sam', seq: 1 })
  t.match(chat.data.id, UUID)
  t.match(chat.data.timestamp, ISO)
  t.ok(Date.parse(chat.data.timestamp) >= before && Date.parse(chat.data.timestamp) <= Date.now())

  b.send('ask-question', { sessionId: 'room-1', question: 'What made you smile today?' }, 'q1')
  t.same(await b.next(), { event: 'ack', data: { id: 'q1', seq: 2 } })
  const asked = await a.next()
  t.same(Object.keys(asked.data).sort(), ['id', 'playerName', 'question', 'seq', 'sessionId'])
  t.match(asked, { event: 'question-asked', data: { sessionId: 'room-1', question: 'What made you smile today?', playerName: 'Alex', seq: 2 } })
  t.match(asked.data.id, UUID)

  // Answers go to everyone, the sender first, then its ack.
  a.send('question-answer', { sessionId: 'room-1', question: 'What made you smile today?', answer: 'Your message.' }, 'a1')
  const [answered, ack] = await a.take(2)
  t.same(ack, { event: 'ack', data: { id: 'a1', seq: 3 } })
  t.same(Object.keys(answered.data).sort(), ['answer', 'id', 'playerName', 'question', 'sender', 'seq', 'sessionId'])
  t.match(answered, {
    event: 'question-answered',
    data: { sessionId: 'room-1', question: 'What made you smile today?', answer: 'Your message.', sender: a.userId, playerName: 'Sam', seq: 3 }
  })
  t.same(await b.next(), answered)

  // Frames without an id get no ack.
  b.send('chat message', { sessionId: 'room-1', text: 'no id' })
  t.match(await a.next(), { event: 'chat message', data: { text: 'no id', playerName: 'Alex', seq: 4 } })

  b.send('leave-session', { sessionId: 'room-1' }, 'l1')
  t.same(await b.next(), { event: 'ack', data: { id: 'l1' } })
  t.same(await a.next(), { event: 'user-left', data: { sessionId: 'room-1', userId: b.userId, playerName: 'Alex' } })

  // Once left, nothing more reaches it, and it may not send there.
  a.send('chat message', { sessionId: 'room-1', text: 'still there?' }, 'c2')
  t.same(await a.next(), { event: 'ack', data: { id: 'c2', seq: 5 } })
  b.send('chat message', { sessionId: 'room-1', text: 'back' }, 'c3')
  t.same(await b.next(), { event: 'error', data: { message: 'Join session room-1 before sending to it', code: 'NOT_IN_SESSION', id: 'c3' } })
  t.equal(a.pending + b.pending, 0)
})

t.test('three participants: chat reaches the two others, an answer reaches all three', async (t) => {
  const { url } = await startServer(t)
  const [a, b, c] = await Promise.all([TestClient.connect(t, url), TestClient.connect(t, url), TestClient.connect(t, url)])
  await a.join('trio', 'Ann')
  await b.join('trio', 'Ben')
  await a.next() // Ben joined
  const joined = await c.join('trio', 'Cat')
  t.same(joined.participants.map((p: { playerName: string }) => p.playerName), ['Ann', 'Ben', 'Cat'])
  t.same((await a.next()).data.playerName, 'Cat')
  t.same((await b.next()).data.playerName, 'Cat')

  b.send('chat message', { sessionId: 'trio', text: 'hi both' }, 'm')
  t.same(await b.next(), { event: 'ack', data: { id: 'm', seq: 1 } })
  const [toA, toC] = [await a.next(), await c.next()]
  t.same(toA, toC)
  t.match(toA, { event: 'chat message', data: { text: 'hi both', sender: b.userId, playerName: 'Ben' } })

  c.send('question-answer', { sessionId: 'trio', answer: 'yes' })
  const [atA, atB, atC] = [await a.next(), await b.next(), await c.next()]
  t.same(atA, atB)
  t.same(atA, atC)
  // `question` may be left out: it is then empty.
  t.match(atA, { event: 'question-answered', data: { question: '', answer: 'yes', sender: c.userId, playerName: 'Cat' } })

  // A fourth connection that did not join hears nothing.
  const outsider = await TestClient.connect(t, url)
  a.send('chat message', { sessionId: 'trio', text: 'private' }, 'p')
  t.same(await a.next(), { event: 'ack', data: { id: 'p', seq: 3 } })
  t.equal((await b.next()).data.text, 'private')
  t.equal((await c.next()).data.text, 'private')
  t.equal(outsider.pending, 0)
})

t.test('text rules: trimmed, measured in code points, control characters refused', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  a.send('join-session', { sessionId: 'rules' }, 'j')
  const [joined] = await a.take(3)
  t.same(joined.data.participants, [{ userId: a.userId, playerName: 'Anonymous' }], 'playerName defaults to Anonymous')
  await b.join('rules', '  Bo \t ')
  t.same((await a.next()).data.playerName, 'Bo', 'names are trimmed')

  const refused = async (event: string, data: object, message: string) => {
    a.send(event, data, 'x')
    t.same(await a.next(), { event: 'error', data: { message, code: 'INVALID_MESSAGE', id: 'x' } }, message)
  }
  let seq = 0
  const accepted = async (text: string, delivered: string) => {
    a.send('chat message', { sessionId: 'rules', text }, 'ok')
    t.same(await a.next(), { event: 'ack', data: { id: 'ok', seq: ++seq } })
    t.equal((await b.next()).data.text, delivered)
  }

  const textRule = 'data.text must be a string of 1–2000 characters without control characters (tab, CR and LF are allowed)'
  await accepted('  padded \n', 'padded')
  await accepted('tab\tand\r\nnew line', 'tab\tand\r\nnew line')
  await accepted('💞'.repeat(2000), '💞'.repeat(2000)) // 2000 code points, 4000 UTF-16 units
  await refused('chat message', { sessionId: 'rules', text: 'x'.repeat(2001) }, textRule)
  await refused('chat message', { sessionId: 'rules', text: '💞'.repeat(2001) }, textRule)
  await refused('chat message', { sessionId: 'rules', text: ' \n\t ' }, textRule)
  await refused('chat message', { sessionId: 'rules', text: 'bell\u0007' }, textRule)
  await refused('chat message', { sessionId: 'rules', text: 'nul\u0000' }, textRule)
  await refused('chat message', { sessionId: 'rules', text: 'c1\u0085' }, textRule)
  await refused('chat message', { sessionId: 'rules', text: 42 }, textRule)
  await refused('chat message', { sessionId: 'rules' }, 'data.text is required')
  await refused('ask-question', { sessionId: 'rules', question: 'q'.repeat(1001) },
    'data.question must be a string of 1–1000 characters without control characters (tab, CR and LF are allowed)')
  await refused('question-answer', { sessionId: 'rules', question: 'q', answer: '' },
    'data.answer must be a string of 1–2000 characters without control characters (tab, CR and LF are allowed)')
  await refused('join-session', { sessionId: 'other', playerName: 'two\nlines' },
    'data.playerName must be a string of 1–50 characters on one line, without control characters')
  await refused('join-session', { sessionId: 'other', playerName: 'n'.repeat(51) },
    'data.playerName must be a string of 1–50 characters on one line, without control characters')
  await refused('join-session', { sessionId: 'has space' }, 'data.sessionId must be a session code of 1–64 letters, digits, _ or -')
  await refused('join-session', { sessionId: 's'.repeat(65) }, 'data.sessionId must be a session code of 1–64 letters, digits, _ or -')
  await refused('leave-session', {}, 'data.sessionId is required')
  const sinceRule = 'data.since must be an integer ≥ 0 (the last seq seen)'
  await refused('join-session', { sessionId: 'rules', since: -1 }, sinceRule)
  await refused('join-session', { sessionId: 'rules', since: 1.5 }, sinceRule)
  await refused('join-session', { sessionId: 'rules', since: '3' }, sinceRule)
  const idRule = 'data.clientMsgId must be a string of 1–64 letters, digits, _ or - (a UUID, say)'
  await refused('chat message', { sessionId: 'rules', text: 'hi', clientMsgId: '' }, idRule)
  await refused('ask-question', { sessionId: 'rules', question: 'hi?', clientMsgId: 'c'.repeat(65) }, idRule)
  await refused('question-answer', { sessionId: 'rules', answer: 'hi', clientMsgId: 'no spaces' }, idRule)
  t.equal(b.pending, 0)
})

t.test('player names: invisible, bidi, tag and zero-width characters are stripped as in persona fields; an invisible-only name is refused', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('names', 'Al')
  const nameRule = 'data.playerName must be a string of 1–50 characters on one line, without control characters'
  for (const invisible of ['\u200b\u200d', '\u202e\u2066', '\u{E0041}\u{E0042}', ' \u2060\ufeff ']) {
    b.send('join-session', { sessionId: 'names', playerName: invisible }, 'x')
    t.same(await b.next(), { event: 'error', data: { message: nameRule, code: 'INVALID_MESSAGE', id: 'x' } }, JSON.stringify(invisible))
  }
  await b.join('names', '\u202eBo\u200bb\u{E0041}\uff21')
  t.same(await a.next(), { event: 'user-joined', data: { sessionId: 'names', userId: b.userId, playerName: 'BobA' } }, 'the others see the cleaned, NFKC-normalised name')
  b.send('join-session', { sessionId: 'other', playerName: '\ufdfa'.repeat(3) }, 'long')
  t.same(await b.next(), { event: 'error', data: { message: nameRule, code: 'INVALID_MESSAGE', id: 'long' } }, 'measured after normalisation')
})

t.test('every error code is an error event and the connection stays open', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const error = (message: string, code: string, id?: string) =>
    ({ event: 'error', data: id === undefined ? { message, code } : { message, code, id } })
  const events = 'join-session, leave-session, chat message, ask-question, question-answer'

  a.ws.send('not json')
  t.same(await a.next(), error('The message is not valid JSON', 'INVALID_JSON'))
  a.ws.send('[1, 2]')
  t.same(await a.next(), error('The message must be a JSON object like {"event": "…", "data": {…}}', 'INVALID_MESSAGE'))
  a.ws.send(JSON.stringify({ data: {}, id: 'e1' }))
  t.same(await a.next(), error('event is required', 'INVALID_MESSAGE', 'e1'))
  a.ws.send(JSON.stringify({ event: 'chat message', id: 'e2' }))
  t.same(await a.next(), error('data is required', 'INVALID_MESSAGE', 'e2'))
  a.ws.send(JSON.stringify({ event: 'chat message', data: 'text', id: 'e3' }))
  t.same(await a.next(), error('data must be an object', 'INVALID_MESSAGE', 'e3'))
  a.ws.send(JSON.stringify({ event: 'chat message', data: {}, id: 7 }))
  t.same(await a.next(), error('id must be a string of 1–128 characters', 'INVALID_MESSAGE'))
  a.send('dance', {}, 'e4')
  t.same(await a.next(), error(`Unknown event, expected one of: ${events}`, 'UNKNOWN_EVENT', 'e4'))
  a.send('ack', { id: 'x' }, 'e5')
  t.same(await a.next(), error(`Unknown event, expected one of: ${events}`, 'UNKNOWN_EVENT', 'e5'))
  a.send('chat message', { sessionId: 'nowhere', text: 'hi' }, 'e6')
  t.same(await a.next(), error('Join session nowhere before sending to it', 'NOT_IN_SESSION', 'e6'))
  a.send('ask-question', { sessionId: 'nowhere', question: 'hi?' })
  t.same(await a.next(), error('Join session nowhere before sending to it', 'NOT_IN_SESSION'))
  a.send('question-answer', { sessionId: 'nowhere', answer: 'hi' })
  t.same(await a.next(), error('Join session nowhere before sending to it', 'NOT_IN_SESSION'))
  a.send('leave-session', { sessionId: 'nowhere' }, 'e7')
  t.same(await a.next(), error('Join session nowhere before sending to it', 'NOT_IN_SESSION', 'e7'))

  // Binary frames, and the same prototype-poisoning protection as HTTP bodies.
  a.ws.send(Buffer.from(JSON.stringify({ event: 'join-session', data: { sessionId: 'x' } })), { binary: true })
  t.same(await a.next(), error('Binary frames are not accepted: send JSON text frames', 'INVALID_MESSAGE'))
  const poisoned = 'The message contains a forbidden __proto__ or constructor.prototype key'
  a.ws.send('{"event":"join-session","data":{"sessionId":"x","__proto__":{"admin":true}},"id":"p1"}')
  t.same(await a.next(), error(poisoned, 'INVALID_MESSAGE'))
  a.ws.send('{"event":"join-session","data":{"sessionId":"x","constructor":{"prototype":{"admin":true}}}}')
  t.same(await a.next(), error(poisoned, 'INVALID_MESSAGE'))
  t.equal(({} as Record<string, unknown>).admin, undefined)

  // Still open and working.
  t.same((await a.join('after-errors', 'Sam')).participants, [{ userId: a.userId, playerName: 'Sam' }])
})

t.test('SESSION_MAX_PARTICIPANTS: the next joiner gets SESSION_FULL until someone leaves', async (t) => {
  const { url } = await startServer(t, { SESSION_MAX_PARTICIPANTS: 2 })
  const [a, b, c] = await Promise.all([TestClient.connect(t, url), TestClient.connect(t, url), TestClient.connect(t, url)])
  await a.join('pair', 'A')
  await b.join('pair', 'B')
  await a.next()
  c.send('join-session', { sessionId: 'pair', playerName: 'C' }, 'j')
  t.same(await c.next(), { event: 'error', data: { message: 'Session pair already has 2 participants', code: 'SESSION_FULL', id: 'j' } })
  t.equal(a.pending + b.pending, 0, 'nobody hears about a refused joiner')

  b.send('leave-session', { sessionId: 'pair' })
  await a.next()
  const joined = await c.join('pair', 'C')
  t.same(joined.participants.map((p: { playerName: string }) => p.playerName), ['A', 'C'])
})

t.test('joining again resends session-joined only; a connection may be in at most 10 sessions', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('s0', 'Sam')
  await b.join('s0', 'Bea')
  await a.next()

  // A second join keeps the first name and announces nothing.
  a.send('join-session', { sessionId: 's0', playerName: 'Renamed' }, 'again')
  const [joined, ack] = await a.take(2)
  t.same(joined.data.participants, [{ userId: a.userId, playerName: 'Sam' }, { userId: b.userId, playerName: 'Bea' }])
  t.same(ack, { event: 'ack', data: { id: 'again' } })
  t.same(joined.data.history, [], 're-joining sends no history (issue 15: `since` asks for it)')
  t.equal(b.pending, 0)

  for (let i = 1; i < 10; i++) await a.join(`s${i}`, 'Sam')
  a.send('join-session', { sessionId: 's10' }, 'eleventh')
  t.same(await a.next(), {
    event: 'error',
    data: { message: 'One connection may be in at most 10 sessions at once; leave one first', code: 'TOO_MANY_SESSIONS', id: 'eleventh' }
  })
  a.send('leave-session', { sessionId: 's3' })
  await a.join('s10', 'Sam')
})

t.test('a reconnecting participant gets the last 50 messages, oldest first, as they were delivered', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 1000 })
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('story', 'Sam')
  await b.join('story', 'Alex')
  await a.next()

  a.send('chat message', { sessionId: 'story', text: 'first' })
  b.send('ask-question', { sessionId: 'story', question: 'favourite song?' })
  const delivered = [await b.next(), await a.next()]
  a.send('question-answer', { sessionId: 'story', question: 'favourite song?', answer: 'ours' })
  delivered.push(await a.next())
  await b.next()

  // Disconnect: the others get user-left; the session stays.
  b.ws.close()
  t.same(await a.next(), { event: 'user-left', data: { sessionId: 'story', userId: b.userId, playerName: 'Alex' } })
  a.send('chat message', { sessionId: 'story', text: 'while you were away' }, 'w')
  t.same(await a.next(), { event: 'ack', data: { id: 'w', seq: 4 } })

  const back = await TestClient.connect(t, url)
  const joined = await back.join('story', 'Alex')
  t.same(joined.participants, [{ userId: a.userId, playerName: 'Sam' }, { userId: back.userId, playerName: 'Alex' }])
  t.equal(joined.history.length, 4)
  t.same(joined.history.slice(0, 3), delivered)
  t.match(joined.history[3], { event: 'chat message', data: { text: 'while you were away', sender: a.userId, playerName: 'Sam' } })
  await a.next()

  for (let i = 0; i < 50; i++) a.send('chat message', { sessionId: 'story', text: `m${i}` })
  const last = await back.take(50)
  const late = await TestClient.connect(t, url)
  const { history } = await late.join('story', 'Late')
  t.equal(history.length, 50)
  t.same(history, last)
})

t.test('frames sent in the same packet as the handshake are not lost', async (t) => {
  const { port } = await startServer(t)
  const handshake = Buffer.from(`${upgradeRequestLines(port).join('\r\n')}\r\n\r\n`)
  const join = clientFrame(JSON.stringify({ event: 'join-session', data: { sessionId: 'early', playerName: 'Eve' }, id: 'early' }))
  const exchange = await rawExchange(t, port, Buffer.concat([handshake, join]))
  for (let i = 0; i < 100 && serverFrames(exchange.received()).texts.length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  const texts = serverFrames(exchange.received()).texts.map((text) => JSON.parse(text))
  t.match(exchange.received().toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  t.same(texts.map((envelope) => envelope.event), ['connected', 'session-joined', 'user-joined', 'ack'])
  t.same(texts[3].data, { id: 'early' })
})

t.test('GET /api/sessions/:id shows the participants of a multiplayer session, never its messages', async (t) => {
  const { app, url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('counted', 'Sam')
  await b.join('counted', 'Alex')
  await a.next()
  a.send('chat message', { sessionId: 'counted', text: 'secret words' }, 'c')
  await a.next()

  const info = async () => (await app.inject({ method: 'GET', url: '/api/sessions/counted' })).json()
  t.match(await info(), { sessionId: 'counted', kind: 'multiplayer', isActive: true, participantCount: 2, participants: ['Sam', 'Alex'], messageCount: 1 })
  t.notMatch(JSON.stringify(await info()), /secret words/)

  b.ws.close()
  await a.next() // user-left
  t.match(await info(), { participantCount: 1, participants: ['Sam'] })
  a.send('leave-session', { sessionId: 'counted' }, 'l')
  t.same(await a.next(), { event: 'ack', data: { id: 'l' } })
  // Empty, but kept until its TTL so partners can come back.
  t.match(await info(), { isActive: true, participantCount: 0, participants: [] })
})
