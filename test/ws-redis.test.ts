import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { createRedisConnections } from '../src/services/redis/connection.js'
import { redisKeys } from '../src/services/redis/keys.js'
import { createRedisSessionStore } from '../src/services/sessions/redis-store.js'
import { spawnServer, startServer, until } from './helper.js'
import { startRedis, type RedisServer } from './redis-server.js'
import { TestClient, type Envelope } from './ws-client.js'

/*
 * SPEC §3 "Ordering, resume and duplicates" and §9 fan-out across instances:
 * two or three app instances sharing one real redis-server, real ws clients.
 */

/** Frames cross two processes and Redis on a shared machine: generous waits. */
const WAIT_MS = 10_000

/** Instances sharing `redis` under one fresh prefix. */
async function instances (t: Test, redis: RedisServer, count: number) {
  const prefix = `w${randomUUID().slice(0, 8)}:`
  const urls: string[] = []
  for (let i = 0; i < count; i++) {
    urls.push((await startServer(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, WS_MESSAGE_RATE: 100_000 })).url)
  }
  return urls
}

/** One member per URL joins `sessionId`, in order; each has read the others' user-joined. */
async function members (t: Test, sessionId: string, urls: string[]) {
  const clients: TestClient[] = []
  for (const [i, url] of urls.entries()) {
    const client = await TestClient.connect(t, url)
    await client.join(sessionId, `P${i}`, WAIT_MS)
    clients.push(client)
  }
  for (const [i, client] of clients.entries()) {
    const later = clients.length - 1 - i
    await until(() => client.pending >= later, WAIT_MS, 'the others\' user-joined')
    await client.take(later)
  }
  return clients
}

/** Every frame a client receives, kept (the test reads them when it is done). */
function record (client: TestClient): Envelope[] {
  const all: Envelope[] = []
  client.ws.on('message', (data: Buffer) => all.push(JSON.parse(data.toString())))
  return all
}

const chats = (frames: Envelope[]) => frames.filter((frame) => frame.event === 'chat message' || frame.event === 'question-answered')

t.test('two instances, 2×100 interleaved messages: complete, in one order everywhere, consecutive seqs', async (t) => {
  const redis = await startRedis(t)
  const [onA, onB, onC] = await members(t, 'across', await instances(t, redis, 3))
  const seen = [record(onA), record(onB), record(onC)]

  for (let i = 0; i < 100; i++) {
    onA.send('question-answer', { sessionId: 'across', answer: `A${i}` }, `A${i}`)
    onB.send('question-answer', { sessionId: 'across', answer: `B${i}` }, `B${i}`)
  }
  await until(() => seen.every((frames) => chats(frames).length === 200), 30_000, 'every answer everywhere')
    .catch((error: Error) => { throw new Error(`${error.message}: ${seen.map((frames) => chats(frames).length).join(', ')}`) })
  const orders = seen.map((frames) => chats(frames).map((frame) => `${frame.data.seq}:${frame.data.answer}`))
  t.same(orders[1], orders[0], 'B saw A\'s order')
  t.same(orders[2], orders[0], 'C saw A\'s order')
  t.same(chats(seen[0]).map((frame) => frame.data.seq), Array.from({ length: 200 }, (_, i) => i + 1))
  // Each sender's own messages in the order it sent them, and its acks carry their seqs.
  const answers = chats(seen[0]).map((frame) => frame.data.answer as string)
  t.same(answers.filter((answer) => answer.startsWith('A')), Array.from({ length: 100 }, (_, i) => `A${i}`))
  const seqOf = new Map(chats(seen[0]).map((frame) => [frame.data.answer, frame.data.seq]))
  await until(() => seen[1].filter((frame) => frame.event === 'ack').length === 100, 5000, 'B\'s acks')
  const acks = seen[1].filter((frame) => frame.event === 'ack')
  t.same(acks.map((ack) => ack.data.seq), acks.map((ack) => seqOf.get(ack.data.id)), 'each ack carries the seq its answer was delivered with')
})

t.test('one connection\'s messages do not wait for each other\'s round trip: 20 at once take a few script calls, and keep their order', async (t) => {
  const redis = await startRedis(t)
  const [sender, receiver] = await members(t, 'burst', await instances(t, redis, 2))
  const scriptCalls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.command('INFO', 'commandstats'))?.[1] ?? 0)
  const before = await scriptCalls()
  for (let i = 1; i <= 20; i++) sender.send('chat message', { sessionId: 'burst', text: `m${i}` }, `m${i}`)
  const acks = await sender.take(20, WAIT_MS)
  const calls = await scriptCalls() - before
  t.ok(calls <= 5, `20 messages recorded in ${calls} script call(s); taking turns, it would be 20`)
  t.same(acks, Array.from({ length: 20 }, (_, i) => ({ event: 'ack', data: { id: `m${i + 1}`, seq: i + 1 } })), 'acked in order, seqs in the order sent')
  t.same((await receiver.take(20, WAIT_MS)).map(({ data }) => `${data.seq} ${data.text}`), Array.from({ length: 20 }, (_, i) => `${i + 1} m${i + 1}`))
})

t.test('frames sent at once are answered in order: messages wait for the join before them, a leave for the messages before it, and what follows a leave is refused', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await instances(t, redis, 2)
  const [watcher] = await members(t, 'turns', [b])
  const client = await TestClient.connect(t, a)
  client.send('chat message', { sessionId: 'turns', text: 'too early' }, 'c0')
  client.send('join-session', { sessionId: 'turns', playerName: 'Quick' }, 'j')
  client.send('chat message', { sessionId: 'turns', text: 'one' }, 'c1')
  client.send('chat message', { sessionId: 'turns', text: 'two' }, 'c2')
  client.send('leave-session', { sessionId: 'turns' }, 'l')
  client.send('chat message', { sessionId: 'turns', text: 'too late' }, 'c3')
  const frames = await client.take(8, WAIT_MS) // the six answers, session-joined and its own user-joined
  const answers = frames.filter(({ event }) => event === 'ack' || event === 'error').map(({ event, data }) => `${event} ${data.id} ${data.seq ?? data.code ?? ''}`.trim())
  t.same(answers, ['error c0 NOT_IN_SESSION', 'ack j', 'ack c1 1', 'ack c2 2', 'ack l', 'error c3 NOT_IN_SESSION'])
  t.ok(frames.findIndex(({ event }) => event === 'session-joined') < frames.findIndex(({ data }) => data.id === 'j'), 'session-joined before the join\'s ack')
  t.same((await watcher.take(4, WAIT_MS)).map(({ event, data }) => `${event} ${data.text ?? data.playerName}`),
    ['user-joined Quick', 'chat message one', 'chat message two', 'user-left Quick'])
  await sleep(200)
  t.equal(watcher.pending, 0, 'nothing else reached the session')
})

t.test('text beyond ASCII crosses instances byte for byte: accents, emoji, CJK, JSON escapes', async (t) => {
  const redis = await startRedis(t)
  const [onA, onB] = await members(t, 'unicode', await instances(t, redis, 2))
  const texts = ['Je t\'aime, chérie', '💜🫶🏽 good night', '愛してる', 'she said "yes" \\ back, \t tabbed', 'ü'.repeat(2000)]
  for (const [i, text] of texts.entries()) {
    onA.send('chat message', { sessionId: 'unicode', text }, `m${i}`)
    t.same(await onA.next(WAIT_MS), { event: 'ack', data: { id: `m${i}`, seq: i + 1 } })
  }
  const received = await onB.take(texts.length, WAIT_MS)
  t.same(received.map(({ event, data }) => [event, data.seq, data.text]), texts.map((text, i) => ['chat message', i + 1, text]))
})

t.test('dropped on A, missed messages sent via C, rejoined on B with since: exactly the missed ones; a resend elsewhere is one event', async (t) => {
  const redis = await startRedis(t)
  const [a, b, c] = await instances(t, redis, 3)
  const sender = await TestClient.connect(t, c)
  const phone = await TestClient.connect(t, a)
  await sender.join('resume', 'Sam', WAIT_MS)
  await phone.join('resume', 'Alex', WAIT_MS)
  await until(() => sender.pending === 1, 5000, 'user-joined')
  await sender.next(WAIT_MS)
  sender.send('chat message', { sessionId: 'resume', text: 'before', clientMsgId: 'm-0' }, 'before')
  t.same(await sender.next(WAIT_MS), { event: 'ack', data: { id: 'before', seq: 1 } })
  const lastSeen = (await phone.next(WAIT_MS)).data.seq
  t.equal(lastSeen, 1)

  phone.ws.terminate()
  t.equal((await sender.next(WAIT_MS)).event, 'user-left')
  for (const i of [1, 2, 3]) {
    sender.send('chat message', { sessionId: 'resume', text: `missed ${i}`, clientMsgId: `m-${i}` }, `m${i}`)
    t.same(await sender.next(WAIT_MS), { event: 'ack', data: { id: `m${i}`, seq: i + 1 } })
  }

  const back = await TestClient.connect(t, b)
  back.send('join-session', { sessionId: 'resume', playerName: 'Alex', since: lastSeen })
  const joined = (await back.next(WAIT_MS)).data
  t.same(joined.history.map((event: Envelope) => [event.data.seq, event.data.text]), [[2, 'missed 1'], [3, 'missed 2'], [4, 'missed 3']])
  t.notOk('historyTruncated' in joined)
  t.equal((await back.next(WAIT_MS)).event, 'user-joined')

  // The sender reconnects to B and resends m-3, not knowing it arrived: acked with its seq, delivered to nobody.
  const resender = await TestClient.connect(t, b)
  await resender.join('resume', 'Sam', WAIT_MS)
  resender.send('chat message', { sessionId: 'resume', text: 'missed 3', clientMsgId: 'm-3' }, 'again')
  t.same(await resender.next(WAIT_MS), { event: 'ack', data: { id: 'again', seq: 4 } })
  resender.send('chat message', { sessionId: 'resume', text: 'new', clientMsgId: 'm-4' }, 'new')
  t.same(await resender.next(WAIT_MS), { event: 'ack', data: { id: 'new', seq: 5 } })
  const next = await back.next(WAIT_MS)
  t.equal(next.event, 'user-joined')
  t.match(await back.next(WAIT_MS), { event: 'chat message', data: { text: 'new', seq: 5 } }, 'the resend never arrived')
})

/** A steady stream of chat messages from `sender`, each with a clientMsgId; what each frame got. */
function steadyStream (sender: TestClient, sessionId: string, intervalMs: number) {
  const acked = new Map<string, number>()
  const refused = new Set<string>()
  let sent = 0
  sender.ws.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString())
    if (frame.event === 'ack') acked.set(frame.data.id, frame.data.seq)
    if (frame.event === 'error') {
      if (frame.data.code !== 'STORE_UNAVAILABLE') throw new Error(`unexpected ${JSON.stringify(frame)}`)
      refused.add(frame.data.id)
    }
  })
  const timer = setInterval(() => {
    const id = `s${++sent}`
    sender.send('chat message', { sessionId, text: id, clientMsgId: id }, id)
  }, intervalMs)
  return {
    acked,
    refused,
    get sent () { return sent },
    async stop () {
      clearInterval(timer)
      await until(() => acked.size + refused.size === sent, 15_000, 'an answer to every frame')
    }
  }
}

/** After an outage: every acked message arrived exactly once, in seq order, nothing refused arrived, seqs have no holes. */
async function checkDelivery (t: Test, stream: ReturnType<typeof steadyStream>, receivers: Envelope[][]) {
  t.ok(stream.refused.size > 0, `${stream.refused.size} of ${stream.sent} refused during the outage`)
  // Acked messages on both sides of the outage (how many come after it depends on how fast Redis came back).
  const numbers = (ids: Iterable<string>) => [...ids].map((id) => Number(id.slice(1)))
  const [acked, refused] = [numbers(stream.acked.keys()), numbers(stream.refused)]
  t.ok(Math.min(...acked) < Math.min(...refused) && Math.max(...acked) > Math.max(...refused),
    `${acked.length} acked, before and after the refused ones`)
  const expected = [...stream.acked].sort((x, y) => x[1] - y[1]).map(([id, seq]) => `${seq}:${id}`)
  await until(() => receivers.every((frames) => chats(frames).length >= expected.length), 20_000, 'every acked message at every receiver')
  for (const frames of receivers) {
    t.same(chats(frames).map((frame) => `${frame.data.seq}:${frame.data.text}`), expected, 'exactly the acked ones, once each, in order')
  }
  t.same(expected.map((entry) => Number(entry.split(':')[0])), Array.from({ length: expected.length }, (_, i) => i + 1),
    'no seq was taken by a refused message')
}

async function steadySetup (t: Test, redis: RedisServer) {
  const [a, b] = await instances(t, redis, 2)
  const [sender, nearby, far] = await members(t, 'steady', [a, a, b])
  return { sender, receivers: [record(nearby), record(far)] }
}

t.test('Redis frozen (SIGSTOP) for 3 s during a steady stream: acked arrive once and in order, refused never', async (t) => {
  const redis = await startRedis(t)
  const { sender, receivers } = await steadySetup(t, redis)
  const stream = steadyStream(sender, 'steady', 25)
  await until(() => stream.acked.size >= 20, 10_000, 'a first stretch')
  redis.pause()
  await new Promise((resolve) => setTimeout(resolve, 3000))
  redis.resume()
  const resumedAt = stream.sent
  await until(() => [...stream.acked.keys()].some((id) => Number(id.slice(1)) > resumedAt + 20), 20_000, 'acks again after the freeze')
  await stream.stop()
  await checkDelivery(t, stream, receivers)
})

t.test('Redis killed and restarted (appendonly) during a steady stream: acked arrive once and in order, refused never', async (t) => {
  const redis = await startRedis(t, { persistent: true })
  const { sender, receivers } = await steadySetup(t, redis)
  const stream = steadyStream(sender, 'steady', 25)
  await until(() => stream.acked.size >= 20, 10_000, 'a first stretch')
  await redis.kill()
  await until(() => stream.refused.size >= 5, 10_000, 'refusals while Redis is gone')
  await redis.start()
  const restartedAt = stream.sent
  await until(() => [...stream.acked.keys()].some((id) => Number(id.slice(1)) > restartedAt + 20), 20_000, 'acks again after the restart')
  await stream.stop()
  await checkDelivery(t, stream, receivers)
})

t.test('the reader of an instance resumes after its connection is killed (CLIENT KILL)', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await instances(t, redis, 2)
  const sender = await TestClient.connect(t, a)
  const far = await TestClient.connect(t, b)
  await sender.join('kill', 'Sam', WAIT_MS)
  await far.join('kill', 'Far', WAIT_MS)
  await sender.next(WAIT_MS)
  const frames = record(far)

  const list = await redis.command('CLIENT', 'LIST')
  const readers = [...list.matchAll(/id=(\d+) .*name=lovers-code:\S+:fanout/g)].map((match) => match[1])
  t.equal(readers.length, 2, 'one reader per instance')
  for (const id of readers) t.match(await redis.command('CLIENT', 'KILL', 'ID', id), /^:1/)
  for (let i = 1; i <= 10; i++) {
    sender.send('chat message', { sessionId: 'kill', text: `after ${i}` }, `k${i}`)
    t.same(await sender.next(WAIT_MS), { event: 'ack', data: { id: `k${i}`, seq: i } })
  }
  await until(() => chats(frames).length === 10, 10_000, 'the messages at B')
  t.same(chats(frames).map((frame) => frame.data.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])

  // And after every connection of every instance is killed.
  await redis.command('CLIENT', 'KILL', 'TYPE', 'normal')
  let seq = 10
  for (let i = 11; i <= 15; i++) {
    for (;;) {
      sender.send('chat message', { sessionId: 'kill', text: `after ${i}`, clientMsgId: `k${i}` }, `k${i}`)
      const reply = await sender.next(WAIT_MS)
      if (reply.event === 'ack') {
        t.equal(reply.data.seq, ++seq)
        break
      }
      t.equal(reply.data.code, 'STORE_UNAVAILABLE')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  await until(() => chats(frames).length === 15, 10_000, 'the later messages at B')
  t.same(chats(frames).map((frame) => frame.data.seq), Array.from({ length: 15 }, (_, i) => i + 1))
})

t.test('a connected reader that falls behind further than the stream keeps replays what it skipped from history, quiet sessions too, once each, in order', async (t) => {
  const redis = await startRedis(t)
  const prefix = `g${randomUUID().slice(0, 8)}:`
  // A stream of about 100 entries; B's reader must not time out while B is stopped (it would then resume as after a break).
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, REDIS_FANOUT_MAXLEN: '100', REDIS_COMMAND_TIMEOUT_MS: '10000', WS_MESSAGE_RATE: '100000' }
  const { url: a } = await startServer(t, { ...env, REDIS_FANOUT_MAXLEN: 100, REDIS_COMMAND_TIMEOUT_MS: 10_000, WS_MESSAGE_RATE: 100_000 })
  const b = await spawnServer(t, env)
  const bUrl = await b.url
  const { instanceId } = await (await fetch(`${bUrl}/health`)).json() as { instanceId: string }
  const readerOfB = async () => new RegExp(`id=(\\d+) .*name=lovers-code:${instanceId}:fanout`).exec(await redis.command('CLIENT', 'LIST'))?.[1]
  const far = await TestClient.connect(t, bUrl)
  await far.join('behind', 'Far', WAIT_MS)
  await far.join('quiet', 'Far', WAIT_MS)
  const frames = record(far)
  const sender = await TestClient.connect(t, a)
  for (const sessionId of ['behind', 'quiet', 'busy']) await sender.join(sessionId, 'Sam', WAIT_MS)
  const acks: string[] = []
  const say = async (sessionId: string, text: string) => {
    sender.send('chat message', { sessionId, text }, text)
    const reply = await sender.next(WAIT_MS)
    if (reply.event === 'ack') acks.push(reply.data.id)
  }
  const reader = await readerOfB()
  t.match(reader, /^\d+$/, 'B reads the stream')

  // B's process stalls with a read pending: Redis answers it with the first
  // entry, then the stream moves on by more than it keeps before B reads again.
  b.child.kill('SIGSTOP')
  for (const text of ['one', 'two', 'three']) await say('behind', text)
  await say('quiet', 'hush')
  for (let i = 0; i < 250; i++) await say('busy', `busy ${i}`)
  await say('behind', 'four')
  t.equal(acks.length, 255, 'every message acked')
  const length = Number(/^:(\d+)/.exec(await redis.command('XLEN', `${prefix}fanout`))?.[1])
  t.ok(length < 255, `the stream was trimmed (${length} of 255 entries kept)`)
  b.child.kill('SIGCONT')

  const of = (sessionId: string) => chats(frames).filter((frame) => frame.data.sessionId === sessionId).map((frame) => [frame.data.seq, frame.data.text])
  await until(() => chats(frames).length >= 5, WAIT_MS, 'the five messages at B')
  await new Promise((resolve) => setTimeout(resolve, 300)) // a duplicate would arrive by now
  t.same(of('behind'), [[1, 'one'], [2, 'two'], [3, 'three'], [4, 'four']])
  t.same(of('quiet'), [[1, 'hush']], 'a session with no later message is replayed too')
  t.equal(await readerOfB(), reader, 'by the connected reader, not after a reconnect')
  t.match(b.stdout(), /"level":"warn".*"sessions":2,"reason":"trimmed","msg":"fan-out: sessions replayed from their history"/)
})

t.test('the fan-out stream stays bounded after 100,000 recorded messages', async (t) => {
  const redis = await startRedis(t)
  const connections = createRedisConnections({ url: redis.url, commandTimeoutMs: 5000, log: { info: () => undefined, warn: () => undefined } })
  t.teardown(() => connections.close())
  t.equal(await connections.whenReady(5000), 'ok')
  const keys = redisKeys('bounded:')
  const store = createRedisSessionStore({ redis: connections.client, keys, ttlMs: 600_000, presenceTtlMs: 45_000, fanOutMaxLength: 1000 })
  t.teardown(() => store.close())
  await store.join('big', { userId: 'u1', playerName: 'Sam' }, 10)
  const text = 'x'.repeat(200)
  const memoryAt = async () => Number(/^:(\d+)/.exec(await redis.command('MEMORY', 'USAGE', keys.fanOut))?.[1])
  let after10k = 0
  for (let sent = 0; sent < 100_000; sent += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, i) => store.recordEvent('big', {
      event: 'chat message', data: { sessionId: 'big', id: String(sent + i), text, sender: 'u1', playerName: 'Sam', timestamp: '' }
    }, { keep: 50 })))
    if (sent + 500 === 10_000) after10k = await memoryAt()
  }
  const length = Number(/^:(\d+)/.exec(await redis.command('XLEN', keys.fanOut))?.[1])
  t.ok(length >= 1000 && length <= 1200, `about REDIS_FANOUT_MAXLEN entries kept (${length})`)
  const memory = await memoryAt()
  t.ok(memory <= after10k * 1.2, `stream memory after 100,000 (${memory} B) no more than after 10,000 (${after10k} B)`)
  t.match(await store.get('big'), { messageCount: 100_000 })
})
