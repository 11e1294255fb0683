import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { createRedisConnections } from '../src/services/redis/connection.js'
import { redisKeys } from '../src/services/redis/keys.js'
import { createMemorySessionStore } from '../src/services/sessions/memory-store.js'
import { createRedisSessionStore } from '../src/services/sessions/redis-store.js'
import { newSessionId, type SessionEvent, type SessionStore } from '../src/services/sessions/store.js'
import { companionStoreSuite } from './companion-store-suite.js'
import { startRedis, type RedisServer } from './redis-server.js'

/*
 * One behavioural suite, two stores (keyv's test-suite idea): whatever the
 * memory store does, the Redis store does the same, against a real
 * redis-server. Then what only the Redis store has: TTLs on every key,
 * prefixes, and presence across instances.
 */

const persona = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: '', role: 'friend' }
const sam = { userId: 'u1', playerName: 'Sam' }
const alex = { userId: 'u2', playerName: 'Alex' }
const kim = { userId: 'u3', playerName: 'Kim' }
const silent = { info: () => undefined, warn: () => undefined }

function chatMessage (sessionId: string, text: string): SessionEvent {
  return { event: 'chat message', data: { sessionId, id: randomUUID(), text, sender: 'u1', playerName: 'Sam', timestamp: new Date(0).toISOString() } }
}

interface StoreOptions { ttlMs?: number, presenceTtlMs?: number }
type Factory = (t: Test, options?: StoreOptions) => Promise<SessionStore>

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

/** A Redis store under its own prefix, so tests never see each other's keys. */
async function redisStore (t: Test, { ttlMs = 60_000, presenceTtlMs = 45_000 }: StoreOptions = {}, prefix = `t${randomUUID().slice(0, 8)}:`) {
  const connections = createRedisConnections({ url: redis.url, commandTimeoutMs: 5000, log: silent })
  t.teardown(() => connections.close())
  t.equal(await connections.whenReady(5000), 'ok')
  const store = createRedisSessionStore({ redis: connections.client, keys: redisKeys(prefix), ttlMs, presenceTtlMs })
  t.teardown(() => store.close())
  return Object.assign(store, { prefix })
}

const factories: Record<string, Factory> = {
  memory: async (t, { ttlMs = 60_000 } = {}) => {
    const store = createMemorySessionStore({ ttlMs })
    t.teardown(() => store.close())
    return store
  },
  redis: redisStore
}

for (const [name, create] of Object.entries(factories)) {
  t.test(`${name} store`, async (t) => {
    t.test('a companion session: created, read, unknown ids are undefined', async (t) => {
      const store = await create(t)
      const before = Date.now()
      const session = await store.createCompanion(persona)
      t.match(session.id, /^[A-Za-z0-9_-]{22}$/)
      t.match(session, { kind: 'companion', persona, history: [], messageCount: 0 })
      t.ok(session.createdAt >= before && session.createdAt === session.lastActivity)
      t.same(await store.get(session.id), session)
      t.equal(await store.get('nobody'), undefined)
      t.equal(await store.appendTurns('nobody', [{ role: 'user', text: 'hi', timestamp: 0 }], 20), undefined)
    })

    t.test('turns are appended in order, the last `keep` kept, every one counted', async (t) => {
      const store = await create(t)
      const { id } = await store.createCompanion(persona)
      const turns = [{ role: 'user' as const, text: 'héllo 👋 "quoted" \\ / <b>', timestamp: 1 }, { role: 'model' as const, text: 'hi', timestamp: 2, alternatives: ['an "older" one'] }]
      const first = await store.appendTurns(id, turns, 3)
      t.same(first?.history, turns, 'any text survives the round trip')
      await store.appendTurns(id, [{ role: 'user', text: 'a', timestamp: 0 }, { role: 'model', text: 'b', timestamp: 0 }], 3)
      const kept = await store.get(id)
      t.same(kept?.kind === 'companion' && kept.history.map((turn) => turn.text), [turns[1].text, 'a', 'b'])
      t.equal(kept?.messageCount, 4)
      const none = await store.appendTurns(id, [{ role: 'user', text: 'c', timestamp: 0 }], 0)
      t.same(none?.history, [], 'keep 0 keeps none')
      t.equal(none?.messageCount, 5)
      t.ok((none?.lastActivity ?? 0) >= (kept?.lastActivity ?? Infinity), 'an append is activity')
    })

    t.test('joining creates a session, joining again does not add, participants in join order', async (t) => {
      const store = await create(t)
      const code = `room-${randomUUID()}`
      const first = await store.join(code, sam, 3)
      t.match(first, { ok: true, created: true, session: { kind: 'multiplayer', id: code, participants: [sam], history: [], messageCount: 0 } })
      t.match(await store.join(code, alex, 3), { ok: true, created: false, session: { participants: [sam, alex] } })
      t.match(await store.join(code, sam, 3), { ok: true, created: false, session: { participants: [sam, alex] } }, 'again: no second Sam')
      t.match(await store.join(code, { userId: 'u1', playerName: 'Other' }, 3), { session: { participants: [sam, alex] } }, 'the name given first stays')
      t.match(await store.get(code), { participants: [sam, alex] }, 'read back the same')
    })

    t.test('a full session refuses newcomers and is not touched by the refusal; members may rejoin', async (t) => {
      const store = await create(t)
      const code = `full-${randomUUID()}`
      await store.join(code, sam, 2)
      const joined = await store.join(code, alex, 2)
      t.same(await store.join(code, kim, 2), { ok: false, reason: 'full' })
      t.same(await store.get(code), joined.ok && joined.session, 'nothing changed, lastActivity included')
      t.match(await store.join(code, alex, 2), { ok: true })
      await store.leave(code, 'u1')
      t.match(await store.join(code, kim, 2), { ok: true, session: { participants: [alex, kim] } }, 'room again once someone left')
    })

    t.test('with room for K, exactly K of many concurrent joins succeed', async (t) => {
      const store = await create(t)
      const code = `race-${randomUUID()}`
      await store.join(code, sam, 4)
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.join(code, { userId: `p${i}`, playerName: `P${i}` }, 4)))
      t.equal(results.filter((result) => result.ok).length, 3)
      t.equal(results.filter((result) => !result.ok && result.reason === 'full').length, 17)
      const session = await store.get(code)
      t.equal(session?.kind === 'multiplayer' && session.participants.length, 4)
    })

    t.test('leaving removes the participant; the empty session lives on; unknown sessions are undefined', async (t) => {
      const store = await create(t)
      const code = `leave-${randomUUID()}`
      await store.join(code, sam, 10)
      await store.join(code, alex, 10)
      t.match(await store.leave(code, 'u1'), { participants: [alex] })
      t.match(await store.leave(code, 'nobody'), { participants: [alex] })
      t.match(await store.leave(code, 'u2'), { participants: [] })
      t.match(await store.get(code), { kind: 'multiplayer', participants: [] }, 'still there, empty')
      t.equal(await store.leave('nowhere', 'u1'), undefined)
      t.equal(await store.recordEvent('nowhere', chatMessage('nowhere', 'x'), { keep: 50 }), undefined)
    })

    t.test('a recording for the session the sender joined records nothing in another started under its id since', async (t) => {
      const store = await create(t)
      const code = `anew-${randomUUID()}`
      const first = await store.join(code, sam, 10)
      t.equal(await store.delete(code), true)
      await sleep(5) // another millisecond: another createdAt
      const second = await store.join(code, alex, 10)
      if (!first.ok || !second.ok) throw new Error('both joins succeed')
      t.not(second.session.createdAt, first.session.createdAt)
      t.equal(await store.recordEvent(code, chatMessage(code, 'for the old one'), { keep: 50, createdAt: first.session.createdAt }), undefined)
      t.match(await store.recordEvent(code, chatMessage(code, 'for this one'), { keep: 50, createdAt: second.session.createdAt }), { duplicate: false, seq: 1 })
      t.match(await store.get(code), { messageCount: 1, history: [/for this one/] })
    })

    t.test('events are kept as sent (their frames, seq last), the last `keep` of them, every one counted', async (t) => {
      const store = await create(t)
      const code = `events-${randomUUID()}`
      await store.join(code, sam, 10)
      const events = Array.from({ length: 7 }, (_, i) => chatMessage(code, `message ${i} ✓`))
      for (const event of events) await store.recordEvent(code, event, { keep: 5 })
      const session = await store.get(code)
      const frames = events.map(({ event, data }, i) => JSON.stringify({ event, data: { ...data, seq: i + 1 } }))
      t.same(session?.history, frames.slice(2))
      t.equal(session?.messageCount, 7)
      t.match(session, { participants: [sam] })
    })

    t.test('recordEvent numbers events 1, 2, 3… even when concurrent; a clientMsgId is recorded once', async (t) => {
      const store = await create(t)
      const code = `seq-${randomUUID()}`
      await store.join(code, sam, 10)
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.recordEvent(code, chatMessage(code, `m${i}`), { keep: 50 })))
      t.same(results.map((result) => result?.seq).sort((a, b) => (a ?? 0) - (b ?? 0)), Array.from({ length: 20 }, (_, i) => i + 1))
      const first = await store.recordEvent(code, chatMessage(code, 'once'), { keep: 50, clientMsgId: 'abc-1' })
      t.match(first, { duplicate: false, seq: 21 })
      const frame = first?.duplicate === false ? first.frame : ''
      t.match(JSON.parse(frame), { event: 'chat message', data: { text: 'once', seq: 21 } })
      t.same(await store.recordEvent(code, chatMessage(code, 'once again'), { keep: 50, clientMsgId: 'abc-1' }), { duplicate: true, seq: 21 })
      const session = await store.get(code)
      t.equal(session?.messageCount, 21, 'the duplicate is not counted')
      t.equal(session?.kind === 'multiplayer' && session.history.at(-1), frame, 'kept with its seq')
      const other = `seq-${randomUUID()}`
      await store.join(other, sam, 10)
      t.match(await store.recordEvent(other, chatMessage(other, 'once'), { keep: 50, clientMsgId: 'abc-1' }), { duplicate: false, seq: 1 },
        'ids are per session')
    })

    t.test('recordings made together are each answered for itself: other rooms, a missing one, a clientMsgId sent twice', async (t) => {
      const store = await create(t)
      const [one, two] = [`together-${randomUUID()}`, `together-${randomUUID()}`]
      await store.join(one, sam, 10)
      await store.join(two, sam, 10)
      const results = await Promise.all([
        store.recordEvent(one, chatMessage(one, 'a'), { keep: 50, clientMsgId: 'twice' }),
        store.recordEvent('nowhere', chatMessage('nowhere', 'b'), { keep: 50 }),
        store.recordEvent(two, chatMessage(two, 'c'), { keep: 50 }),
        store.recordEvent(one, chatMessage(one, 'd'), { keep: 50, clientMsgId: 'twice' }),
        store.recordEvent(one, chatMessage(one, 'e'), { keep: 1 })
      ])
      t.same(results.map((result) => result === undefined ? 'missing' : [result.duplicate, result.seq]),
        [[false, 1], 'missing', [false, 1], [true, 1], [false, 2]])
      const session = await store.get(one)
      t.same(session?.kind === 'multiplayer' && session.history.map((frame) => (JSON.parse(frame) as SessionEvent).data.text), ['e'],
        'the duplicate is not kept; each recording keeps as many as it says')
      t.equal(session?.messageCount, 2)
      t.equal(await store.get('nowhere'), undefined, 'a recording creates no room')
    })

    t.test('delete erases a session of either kind once; counts by kind', async (t) => {
      const store = await create(t)
      const start = await store.counts()
      const a = await store.createCompanion(persona)
      const b = await store.createCompanion(persona)
      const code = `count-${randomUUID()}`
      await store.join(code, sam, 10)
      t.same(await store.counts(), { companion: start.companion + 2, multiplayer: start.multiplayer + 1 })
      t.equal(await store.delete(a.id), true)
      t.equal(await store.delete(a.id), false)
      t.equal(await store.get(a.id), undefined)
      t.ok(await store.get(b.id), 'the other stays')
      t.equal(await store.delete(code), true)
      t.equal(await store.get(code), undefined)
      t.same(await store.counts(), { companion: start.companion + 1, multiplayer: start.multiplayer })
    })

    t.test('sessions expire SESSION_TTL_MS after their last activity, unless someone is connected', async (t) => {
      const ttlMs = 1500
      const store = await create(t, { ttlMs })
      const quiet = await store.createCompanion(persona)
      const active = await store.createCompanion(persona)
      const empty = `empty-${randomUUID()}`
      const live = `live-${randomUUID()}`
      await store.join(empty, sam, 10)
      await store.leave(empty, 'u1')
      await store.join(live, alex, 10)
      const started = Date.now()
      // Activity renews the TTL: keep `active` busy until the others have expired.
      while (Date.now() - started < ttlMs + 500) {
        await store.appendTurns(active.id, [{ role: 'user', text: 'still here', timestamp: 0 }], 20)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      t.ok(await store.get(active.id), 'the active one lives')
      t.equal(await store.get(quiet.id), undefined, 'the quiet companion expired')
      t.equal(await store.get(empty), undefined, 'the empty room expired')
      t.match(await store.get(live), { participants: [alex] }, 'a room with someone connected lives')
      t.same(await store.counts(), { companion: 1, multiplayer: 1 })
    })

    companionStoreSuite(t, async (t) => ({ store: await create(t), advance: (ms) => sleep(ms) }))
  })
}

t.test('redis store only', async (t) => {
  const keysOf = async (prefix: string) => {
    const reply = await redis.command('KEYS', `${prefix}*`)
    return reply.split('\r\n').filter((line) => line.startsWith(prefix)).sort()
  }
  const pttl = async (key: string) => Number(/^:(-?\d+)/.exec(await redis.command('PTTL', key))?.[1])

  t.test('the recordings of one tick are one script call; each later one its own', async (t) => {
    const store = await redisStore(t)
    const calls = async () => {
      const stats = await redis.command('INFO', 'commandstats')
      const count = (command: string) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
      return { scripts: count('evalsha') + count('eval'), appends: count('xadd') }
    }
    await store.join('tick', sam, 10)
    await store.recordEvent('tick', chatMessage('tick', 'first'), { keep: 50 })
    const before = await calls()
    const together = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((text) => store.recordEvent('tick', chatMessage('tick', text), { keep: 50 })))
    t.same(together.map((result) => result?.seq), [2, 3, 4, 5, 6], 'in call order')
    const afterTogether = await calls()
    t.same([afterTogether.scripts - before.scripts, afterTogether.appends - before.appends], [1, 5], 'one call, five stream entries')
    for (const text of ['f', 'g']) await store.recordEvent('tick', chatMessage('tick', text), { keep: 50 })
    const afterEach = await calls()
    t.equal(afterEach.scripts - afterTogether.scripts, 2)
  })

  t.test('every key is under the prefix and has a TTL of at most SESSION_TTL_MS; all of them go when sessions expire', async (t) => {
    const ttlMs = 1500
    const store = await redisStore(t, { ttlMs })
    const { prefix } = store
    t.same(await keysOf(prefix), [], 'nothing before')
    const companion = await store.createCompanion(persona)
    await store.appendTurns(companion.id, [{ role: 'user', text: 'hi', timestamp: 0 }], 20)
    await store.join('r1', sam, 10)
    await store.recordEvent('r1', chatMessage('r1', 'hello'), { keep: 50, clientMsgId: 'm-1' })
    await store.join('r1', alex, 10)
    await store.leave('r1', 'u2')
    await store.leave('r1', 'u1')
    t.same(await store.counts(), { companion: 1, multiplayer: 1 })
    // The fan-out stream is the deployment's, not a session's: trimmed by length, not expired.
    const fanOut = `${prefix}fanout`
    const keys = (await keysOf(prefix)).filter((key) => key !== fanOut)
    t.same(keys, [
      `${prefix}companion:{${companion.id}}`, `${prefix}companion:{${companion.id}}:history`,
      `${prefix}room:{r1}`, `${prefix}room:{r1}:history`, `${prefix}room:{r1}:msg:m-1`,
      `${prefix}sessions:companion`, `${prefix}sessions:room`
    ].sort(), 'the documented layout; an empty room has no participants or presence keys')
    for (const key of keys.filter((key) => !key.includes('sessions:'))) {
      const left = await pttl(key)
      t.ok(left > 0 && left <= ttlMs, `${key} expires (${left} ms)`)
    }
    let remaining = keys
    const deadline = Date.now() + ttlMs + 5000
    while (Date.now() < deadline) {
      await store.counts() // forgets expired index entries
      remaining = (await keysOf(prefix)).filter((key) => key !== fanOut)
      if (remaining.length === 0) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.same(remaining, [], 'the key count returns to where it started')
  })

  t.test('a recorded event renews its room at most once per 1 % of the TTL (a second at most); a history it creates expires', async (t) => {
    const ttlMs = 200_000 // 1 % is 2 s: the one-second cap applies
    const store = await redisStore(t, { ttlMs })
    const meta = `${store.prefix}room:{busy}`
    const roomKeys = [meta, `${meta}:history`, `${meta}:participants`, `${meta}:presence`]
    const expiryInIndex = async () => Number(/^\$\d+\r\n(\d+)/.exec(await redis.command('ZSCORE', `${store.prefix}sessions:room`, 'busy'))?.[1])
    await store.join('busy', sam, 10)
    await sleep(300)
    await store.recordEvent('busy', chatMessage('busy', 'one'), { keep: 50 })
    t.ok(await pttl(meta) <= ttlMs - 250, `renewed by the join 300 ms before: not renewed again (${await pttl(meta)} ms left)`)
    t.ok(await pttl(roomKeys[1]) > ttlMs - 250, 'the history the first event created expires with the room')
    const indexedBefore = await expiryInIndex()

    await sleep(900)
    const sent = Date.now()
    await store.recordEvent('busy', chatMessage('busy', 'two'), { keep: 50 })
    for (const key of roomKeys) {
      const left = await pttl(key)
      t.ok(left > ttlMs - 250 && left <= ttlMs, `1.2 s after the last renewal, ${key} is renewed (${left} ms left)`)
    }
    const indexed = await expiryInIndex()
    t.ok(indexed >= sent + ttlMs && indexed > indexedBefore + 1000, 'and so is its expiry in the index')
  })

  t.test('members of an instance that stops vouching for them are dropped after REDIS_PRESENCE_TTL_MS', async (t) => {
    const prefix = `p${randomUUID().slice(0, 8)}:`
    const a = await redisStore(t, { presenceTtlMs: 600 }, prefix)
    const b = await redisStore(t, { presenceTtlMs: 600 }, prefix)
    await a.join('shared', sam, 10)
    await b.join('shared', alex, 10)
    t.match(await b.get('shared'), { participants: [sam, alex] }, 'one session across instances')
    await a.close() // A dies: no leave, no more renewals
    const started = Date.now()
    let participants: unknown
    while (Date.now() - started < 5000) {
      const session = await b.get('shared')
      participants = session?.kind === 'multiplayer' ? session.participants : undefined
      if (Array.isArray(participants) && participants.length === 1) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.same(participants, [alex], 'Sam is dropped, Alex (renewed by B) stays')
    const elapsed = Date.now() - started
    t.ok(elapsed >= 300 && elapsed < 2000, `dropped ${elapsed} ms after the last renewal could have happened`)
    t.match(await b.join('shared', kim, 2), { ok: true }, 'and the seat is free again')
  })
})

t.test('session ids: 128 random bits, URL-safe, never repeated (SPEC §2.1: at least 122)', async (t) => {
  const ids = Array.from({ length: 10_000 }, () => newSessionId())
  t.equal(new Set(ids).size, ids.length, 'all distinct')
  for (const id of ids.slice(0, 100)) {
    t.match(id, /^[A-Za-z0-9_-]{22}$/)
    t.equal(Buffer.from(id, 'base64url').length, 16, '16 bytes behind each id')
  }
  // Every bit position varies across ids: nothing is fixed or counted.
  const bytes = ids.map((id) => Buffer.from(id, 'base64url'))
  for (let bit = 0; bit < 128; bit++) {
    const ones = bytes.filter((b) => (b[bit >> 3] >> (bit & 7)) & 1).length
    t.ok(ones > 4500 && ones < 5500, `bit ${bit} is set in about half the ids (${ones})`)
  }
})
