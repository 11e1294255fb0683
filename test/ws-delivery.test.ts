import t from 'tap'
import { startServer } from './helper.js'
import { TestClient } from './ws-client.js'

/* SPEC §3 "Ordering, resume and duplicates" on one instance (in memory). */

t.test('seq numbers recorded events 1, 2, 3… per session; acks carry it; presence carries none', async (t) => {
  const { url } = await startServer(t)
  const [a, b] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await a.join('numbered', 'Sam')
  await b.join('numbered', 'Alex')
  const presence = await a.next()
  t.same(presence, { event: 'user-joined', data: { sessionId: 'numbered', userId: b.userId, playerName: 'Alex' } })

  a.send('chat message', { sessionId: 'numbered', text: 'one' }, 'c1')
  t.same(await a.next(), { event: 'ack', data: { id: 'c1', seq: 1 } })
  t.match(await b.next(), { event: 'chat message', data: { text: 'one', seq: 1 } })
  b.send('ask-question', { sessionId: 'numbered', question: 'two?' }, 'q')
  t.same(await b.next(), { event: 'ack', data: { id: 'q', seq: 2 } })
  t.match(await a.next(), { event: 'question-asked', data: { question: 'two?', seq: 2 } })
  a.send('question-answer', { sessionId: 'numbered', answer: 'three' }, 'x')
  t.match(await a.next(), { event: 'question-answered', data: { answer: 'three', seq: 3 } })
  t.same(await a.next(), { event: 'ack', data: { id: 'x', seq: 3 } })
  t.match(await b.next(), { event: 'question-answered', data: { seq: 3 } })

  // Another session counts on its own.
  await a.join('elsewhere', 'Sam')
  a.send('chat message', { sessionId: 'elsewhere', text: 'first there' }, 'e')
  t.same(await a.next(), { event: 'ack', data: { id: 'e', seq: 1 } })

  b.send('leave-session', { sessionId: 'numbered' }, 'l')
  t.same(await b.next(), { event: 'ack', data: { id: 'l' } }, 'no seq for what is not recorded')
  t.same(await a.next(), { event: 'user-left', data: { sessionId: 'numbered', userId: b.userId, playerName: 'Alex' } })
})

t.test('many senders at once: every member receives every event once, in seq order', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 1000 })
  const members = await Promise.all([0, 1, 2].map(() => TestClient.connect(t, url)))
  for (const [i, member] of members.entries()) await member.join('busy', `P${i}`)
  await members[0].take(2)
  await members[1].take(1)
  const perSender = 60
  for (let i = 0; i < perSender; i++) {
    for (const [m, member] of members.entries()) member.send('question-answer', { sessionId: 'busy', answer: `${m}:${i}` }, `${m}:${i}`)
  }
  for (const member of members) {
    const frames = await member.take(perSender * (members.length + 1))
    const answers = frames.filter((frame) => frame.event === 'question-answered')
    t.same(answers.map((frame) => frame.data.seq), Array.from({ length: perSender * 3 }, (_, i) => i + 1), 'consecutive, in order')
    const acks = frames.filter((frame) => frame.event === 'ack')
    t.equal(acks.length, perSender)
    // Each ack's seq is the seq its own answer was delivered with.
    for (const ack of acks) t.equal(answers[ack.data.seq - 1].data.answer, ack.data.id)
  }
})

t.test('join with since: exactly what came after it; historyTruncated when some of it is gone', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 1000 })
  const a = await TestClient.connect(t, url)
  await a.join('resume', 'Sam')
  for (let i = 1; i <= 60; i++) a.send('chat message', { sessionId: 'resume', text: `m${i}` }, `c${i}`)
  const acks = await a.take(60)
  t.same(acks.at(-1), { event: 'ack', data: { id: 'c60', seq: 60 } })

  const joinWith = async (since: number | undefined) => {
    const client = await TestClient.connect(t, url)
    client.send('join-session', since === undefined ? { sessionId: 'resume' } : { sessionId: 'resume', since })
    const joined = (await client.next()).data
    return { texts: joined.history.map((event: any) => event.data.text), seqs: joined.history.map((event: any) => event.data.seq), joined }
  }
  const seqs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

  const recent = await joinWith(55)
  t.same(recent.seqs, seqs(56, 60))
  t.same(recent.texts, ['m56', 'm57', 'm58', 'm59', 'm60'])
  t.notOk('historyTruncated' in recent.joined, 'nothing missing: no flag')
  t.same((await joinWith(60)).seqs, [], 'up to date: nothing')
  t.same((await joinWith(10)).seqs, seqs(11, 60), 'exactly the 50 kept')
  t.notOk('historyTruncated' in (await joinWith(10)).joined)

  const gap = await joinWith(9)
  t.same(gap.seqs, seqs(11, 60), 'the kept ones…')
  t.equal(gap.joined.historyTruncated, true, '…and 10 is gone')
  t.equal((await joinWith(0)).joined.historyTruncated, true)
  t.same((await joinWith(undefined)).seqs, seqs(11, 60), 'without since: the last 50')
  t.notOk('historyTruncated' in (await joinWith(undefined)).joined)
  t.same((await joinWith(500)).seqs, seqs(11, 60), 'a since from an earlier session under this code counts as 0')
})

t.test('a client that drops, misses messages and rejoins with since gets exactly the missed ones', async (t) => {
  const { url } = await startServer(t)
  const [a, b] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await a.join('flaky', 'Sam')
  await b.join('flaky', 'Alex')
  await a.next()
  a.send('chat message', { sessionId: 'flaky', text: 'seen' })
  const lastSeen = (await b.next()).data.seq
  b.ws.terminate()
  await a.next() // user-left
  for (const text of ['missed 1', 'missed 2']) a.send('chat message', { sessionId: 'flaky', text }, text)
  await a.take(2)

  const back = await TestClient.connect(t, url)
  back.send('join-session', { sessionId: 'flaky', playerName: 'Alex', since: lastSeen })
  const joined = (await back.next()).data
  t.same(joined.history.map((event: any) => [event.data.seq, event.data.text]), [[2, 'missed 1'], [3, 'missed 2']])
})

t.test('clientMsgId: a resend is acked with the original seq and delivered to nobody', async (t) => {
  const { url } = await startServer(t)
  const [a, b] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  await a.join('dedupe', 'Sam')
  await b.join('dedupe', 'Alex')
  await a.next()

  a.send('chat message', { sessionId: 'dedupe', text: 'once', clientMsgId: 'm-1' }, 'first')
  t.same(await a.next(), { event: 'ack', data: { id: 'first', seq: 1 } })
  t.match(await b.next(), { event: 'chat message', data: { text: 'once', seq: 1 } })

  // The sender reconnects, not knowing whether it arrived, and sends again.
  a.ws.terminate()
  await b.next() // user-left
  const again = await TestClient.connect(t, url)
  await again.join('dedupe', 'Sam')
  await b.next() // user-joined
  again.send('chat message', { sessionId: 'dedupe', text: 'once', clientMsgId: 'm-1' }, 'resend')
  t.same(await again.next(), { event: 'ack', data: { id: 'resend', seq: 1 } })
  // Answers reach everyone, the sender included: a duplicate reaches nobody, the sender neither.
  b.send('question-answer', { sessionId: 'dedupe', answer: 'a', clientMsgId: 'm-2' }, 'a1')
  t.match(await b.next(), { event: 'question-answered', data: { seq: 2 } })
  t.same(await b.next(), { event: 'ack', data: { id: 'a1', seq: 2 } })
  b.send('question-answer', { sessionId: 'dedupe', answer: 'a', clientMsgId: 'm-2' }, 'a2')
  t.same(await b.next(), { event: 'ack', data: { id: 'a2', seq: 2 } })
  t.match(await again.next(), { event: 'question-answered', data: { seq: 2 } })
  again.send('ask-question', { sessionId: 'dedupe', question: 'new?', clientMsgId: 'm-3' }, 'q')
  t.same(await again.next(), { event: 'ack', data: { id: 'q', seq: 3 } })
  t.match(await b.next(), { event: 'question-asked', data: { question: 'new?', seq: 3 } }, 'the duplicates left no gap and no copy')
  t.equal(again.pending + b.pending, 0)

  // The same id in another session is another message.
  await b.join('other', 'Alex')
  b.send('chat message', { sessionId: 'other', text: 'once', clientMsgId: 'm-1' }, 'o')
  t.same(await b.next(), { event: 'ack', data: { id: 'o', seq: 1 } })
  const { history } = await (await TestClient.connect(t, url)).join('dedupe', 'Late')
  t.same(history.map((event: any) => event.data.seq), [1, 2, 3], 'recorded once each')
})

t.test('re-joining a joined session sends no history unless asked for with since (issue 15: no amplification)', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 1000 })
  const a = await TestClient.connect(t, url)
  await a.join('big', 'Sam')
  for (let i = 0; i < 50; i++) a.send('chat message', { sessionId: 'big', text: 'x'.repeat(2000) })
  const b = await TestClient.connect(t, url)
  t.equal((await b.join('big', 'Alex')).history.length, 50, 'the first join gets the history')

  let bytes = 0
  b.ws.on('message', (data: Buffer) => { bytes += data.length })
  for (let i = 0; i < 20; i++) b.send('join-session', { sessionId: 'big' }, `again${i}`)
  const frames = await b.take(40)
  t.same(frames.filter((frame) => frame.event === 'session-joined').map((frame) => frame.data.history.length), Array(20).fill(0))
  t.ok(bytes < 20 * 1000, `20 re-joins cost ${bytes} bytes, not 20 histories`)

  b.send('join-session', { sessionId: 'big', since: 48 })
  const asked = await b.next()
  t.same(asked.data.history.map((event: any) => event.data.seq), [49, 50])
})

t.test('a history asked for again with since counts against the message rate: one message per 10 events sent', async (t) => {
  const { url } = await startServer(t, { WS_MESSAGE_RATE: 20 })
  const a = await TestClient.connect(t, url)
  await a.join('told', 'Sam')
  for (let i = 1; i <= 15; i++) {
    a.send('chat message', { sessionId: 'told', text: `m${i}` }, `m${i}`)
    t.same(await a.next(), { event: 'ack', data: { id: `m${i}`, seq: i } })
  }
  const b = await TestClient.connect(t, url)
  t.equal((await b.join('told', 'Alex')).history.length, 15, 'a first join is not charged')
  t.equal((await a.next()).event, 'user-joined')

  // b's window: its join (1) and this re-join (1), plus 15 events sent = 2 more; 16 left.
  b.send('join-session', { sessionId: 'told', since: 0 }, 'again')
  t.equal((await b.next()).data.history.length, 15)
  t.same(await b.next(), { event: 'ack', data: { id: 'again' } })
  for (let i = 1; i <= 17; i++) b.send('leave-session', { sessionId: 'elsewhere' }, `f${i}`)
  const answers = await b.take(17)
  t.same(answers.map((answer) => answer.data.code), [...Array(16).fill('NOT_IN_SESSION'), 'RATE_LIMITED'])
})
