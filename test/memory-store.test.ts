import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { createMemorySessionStore, type MemoryStoreOptions } from '../src/services/sessions/memory-store.js'
import type { MultiplayerSession, SessionEvent } from '../src/services/sessions/store.js'
import { buildAppWithLog } from './helper.js'

/*
 * What only the memory store has (the behaviour both stores share is
 * session-store.test.ts): SPEC §9 "memory stays bounded however many
 * sessions come and go", the store-wide byte budget.
 */

const persona = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: '', role: 'friend' }
// 512 per session + the 22-character id + 22 characters of persona, 2 bytes a character.
const COMPANION_BYTES = 512 + 44 + 44
const sam = { userId: 'u1', playerName: 'Sam' }

function setup (t: Test, options: Partial<MemoryStoreOptions> = {}) {
  const clock = { now: 0 }
  const evictions: number[] = []
  const store = createMemorySessionStore({
    ttlMs: 1000, sweepIntervalMs: 60_000, now: () => clock.now, onEvict: (count) => evictions.push(count), ...options
  })
  t.teardown(() => store.close())
  return { store, clock, evictions }
}

/** A `chat message` envelope the way the chat hub builds it. */
function chatMessage (sessionId: string, text: string): SessionEvent {
  return {
    event: 'chat message',
    data: { sessionId, id: randomUUID(), text, sender: randomUUID(), playerName: 'P'.repeat(50), timestamp: new Date(0).toISOString() }
  }
}

const ids = async (store: ReturnType<typeof setup>['store'], list: string[]) =>
  Promise.all(list.map(async (id) => (await store.get(id)) !== undefined))

t.test('the estimate: text as UTF-16 plus a fixed allowance per session and per entry', async (t) => {
  const { store } = setup(t)
  t.equal(store.bytes, 0)
  const companion = await store.createCompanion(persona)
  t.equal(store.bytes, COMPANION_BYTES)
  await store.appendTurns(companion.id, [{ role: 'user', text: 'hi', timestamp: 0 }, { role: 'model', text: 'hello', timestamp: 0 }], 20)
  t.equal(store.bytes, COMPANION_BYTES + (128 + 4) + (128 + 10), '128 per turn plus its text')
  await store.appendTurns(companion.id, [{ role: 'user', text: 'bye', timestamp: 0 }], 1)
  t.equal(store.bytes, COMPANION_BYTES + 128 + 6, 'trimmed turns no longer count')

  const code = 'c'.repeat(64)
  await store.join(code, sam, 10)
  const room = 512 + 128 + (128 + 4 + 6)
  t.equal(store.bytes, COMPANION_BYTES + 134 + room, '512 per session + its code, 128 per participant plus its names')
  const before = store.bytes
  for (let i = 0; i < 50; i++) await store.recordEvent(code, chatMessage(code, 'x'.repeat(2000)), { keep: 50 })
  // A message is kept as its frame: 128 + 2 × (116 of the envelope's keys and punctuation
  // + 64 code + 36 id + 2000 text + 36 sender + 50 name + 24 timestamp + a 2-digit seq).
  const perMessage = 128 + 2 * 2328
  t.equal(perMessage, 4784)
  t.equal(store.bytes - before, 50 * perMessage - 9 * 2, 'seqs 1–9 are a digit shorter')
  for (let i = 0; i < 10; i++) await store.recordEvent(code, chatMessage(code, 'x'.repeat(2000)), { keep: 50 })
  t.equal(store.bytes - before, 50 * perMessage, 'a full session holds 50 messages as they come and go')
  t.equal(room + 50 * perMessage, 239_978, 'a full multiplayer session with one participant: about 234 KiB')
  await store.leave(code, 'u1')
  t.equal(store.bytes, COMPANION_BYTES + 134 + room - 138 + 50 * perMessage, 'leaving removes the participant')
})

t.test('over budget, the least recently active sessions are evicted first', async (t) => {
  const { store, evictions } = setup(t, { maxBytes: 3 * COMPANION_BYTES })
  const [a, b, c] = [await store.createCompanion(persona), await store.createCompanion(persona), await store.createCompanion(persona)]
  t.equal(store.bytes, 3 * COMPANION_BYTES, 'exactly at the budget is within it')
  t.same(evictions, [])
  const d = await store.createCompanion(persona)
  t.same(await ids(store, [a.id, b.id, c.id, d.id]), [false, true, true, true], 'the oldest went')
  t.equal(store.bytes, 3 * COMPANION_BYTES)
  t.same(evictions, [1], 'one report per write that evicted, with the count')
  t.same(await store.counts(), { companion: 3, multiplayer: 0 })

  // Twice a small one's size: 512 + 44 + 2 × (3 + 304 + 9 + 6).
  const big = await store.createCompanion({ ...persona, personality: 'p'.repeat(304) })
  t.same(await ids(store, [b.id, c.id, d.id, big.id]), [false, false, true, true], 'as many as it takes, oldest first')
  t.equal(store.bytes, 3 * COMPANION_BYTES)
  t.same(evictions, [1, 2])
  t.equal(await store.appendTurns(a.id, [{ role: 'user', text: 'hi', timestamp: 0 }], 20), undefined, 'an evicted session is gone, like an expired one')
})

t.test('activity moves a session to the most recently active end; reads do not', async (t) => {
  const ROOM = 512 + 2
  const MESSAGE = 128 + 2 * (116 + 1 + 36 + 5 + 36 + 50 + 24 + 1) // its frame: envelope, fields, seq
  const { store, clock } = setup(t, { maxBytes: 3 * COMPANION_BYTES + ROOM + MESSAGE })
  const a = await store.createCompanion(persona)
  const b = await store.createCompanion(persona)
  await store.join('r', sam, 10)
  await store.leave('r', 'u1') // an empty room: evictable
  const c = await store.createCompanion(persona)
  clock.now = 10
  t.equal((await store.appendTurns(a.id, [{ role: 'user', text: 'hi', timestamp: 0 }], 0))?.lastActivity, 10, 'a kept no turn but was active')
  t.ok(await store.get(b.id), 'reading b is not activity')
  await store.recordEvent('r', chatMessage('r', 'hello'), { keep: 50 })
  t.equal(store.bytes, 3 * COMPANION_BYTES + ROOM + MESSAGE, 'at the budget, not over it')
  const d = await store.createCompanion(persona)
  t.same(await ids(store, [a.id, b.id, 'r', c.id, d.id]), [true, false, true, true, true], 'b, not a')
  await store.createCompanion(persona)
  t.same(await ids(store, [a.id, 'r', c.id]), [true, true, false], 'then c: the room had a message after c was created')
  await store.createCompanion(persona)
  t.same(await ids(store, [a.id, 'r']), [false, true], 'then a')
  await store.createCompanion(persona)
  t.same(await ids(store, ['r', d.id]), [false, true], 'then the room')
})

t.test('a multiplayer session with someone connected is never evicted; other writes still succeed when nothing can be', async (t) => {
  const { store, evictions } = setup(t, { maxBytes: 2200 })
  await store.join('live', sam, 10)
  const old = await store.createCompanion(persona)
  const next = await store.createCompanion(persona)
  for (let i = 0; i < 2; i++) await store.recordEvent('live', chatMessage('live', 'x'.repeat(10)), { keep: 50 })
  t.same(await ids(store, ['live', old.id, next.id]), [true, false, false], 'the companions went, the live session stayed')
  t.ok(store.bytes <= 2200)
  const joined = await store.join('live', { userId: 'u2', playerName: 'Alex' }, 10)
  t.equal(joined.ok, true, 'it can still be joined')
  const another = await store.createCompanion(persona)
  t.ok(await store.get(another.id), 'new companions are still created, while nothing else is evictable')
  t.ok(store.bytes > 2200, 'over budget by that companion: idle sessions keep a quarter of the budget')
  t.ok(await store.get('live'))
  t.same(evictions, [1, 1])

  await store.leave('live', 'u1')
  await store.leave('live', 'u2')
  await store.createCompanion(persona)
  t.same(await ids(store, ['live', another.id]), [false, false], 'once empty it is evictable like any other')
  t.equal(store.bytes, COMPANION_BYTES)
})

t.test('once pinned sessions nearly fill the budget, no session gains its first participant; joined ones still take joiners', async (t) => {
  const LIVE = 512 + 8 + (128 + 4 + 6) // 'live' with Sam
  // Frames: the envelope's 116 characters, the fields' and a 1-digit seq.
  const MESSAGE = 128 + 2 * (116 + 4 + 36 + 1000 + 36 + 50 + 24 + 1)
  const SHORT = 128 + 2 * (116 + 4 + 36 + 170 + 36 + 50 + 24 + 1)
  const EMPTY_ROOM = 512 + 10
  const alex = { userId: 'u2', playerName: 'Alex' }
  // The reserve idle sessions keep is a quarter of the budget: two companions.
  const { store, clock, evictions } = setup(t, { maxBytes: 8 * COMPANION_BYTES })
  const c1 = await store.createCompanion(persona)
  const c2 = await store.createCompanion(persona)
  await store.join('empty', sam, 10)
  await store.leave('empty', 'u1')
  t.equal(store.pinnedBytes, 0, 'an empty room is idle')
  t.same(await store.join('live', sam, 10), { ok: true, session: await store.get('live'), created: true })
  t.equal(store.pinnedBytes, LIVE)

  await store.recordEvent('live', chatMessage('live', 'x'.repeat(1000)), { keep: 50 })
  t.equal(store.pinnedBytes, LIVE + MESSAGE)
  t.equal(store.bytes, LIVE + MESSAGE + COMPANION_BYTES + EMPTY_ROOM, 'pinned under 75 % of the budget: the total is kept within it')
  t.ok(store.bytes <= 8 * COMPANION_BYTES)
  t.same(await ids(store, [c1.id, c2.id, 'empty']), [false, true, true], 'by evicting the oldest')
  clock.now = 10
  await t.rejects(store.recordEvent('live', chatMessage('live', 'x'.repeat(1000)), { keep: 50 }),
    { code: 'SESSION_FULL', message: 'The server is at capacity: this message cannot be stored right now' },
    'a message that would take pinned sessions past the budget is refused')
  t.equal(store.pinnedBytes, LIVE + MESSAGE, 'and nothing of it stored')
  t.equal((await store.get('live'))?.history.length, 1)
  await store.recordEvent('live', chatMessage('live', 'x'.repeat(170)), { keep: 50 })
  t.equal(store.pinnedBytes, LIVE + MESSAGE + SHORT)
  t.ok(store.pinnedBytes > 0.75 * 8 * COMPANION_BYTES, 'pinned hold over 75 % of the budget')
  t.same(await ids(store, [c2.id, 'empty']), [true, true], 'idle sessions within the reserve are not evicted for them')
  t.same(evictions, [1])

  t.same(await store.join('new', alex, 10), { ok: false, reason: 'capacity' })
  t.equal(await store.get('new'), undefined, 'not created')
  t.same(await store.join('empty', alex, 10), { ok: false, reason: 'capacity' })
  t.match(await store.get('empty'), { participants: [], lastActivity: 0 }, 'an idle room stays idle, and a refusal is no activity')
  const before = store.pinnedBytes
  const joined = await store.join('live', alex, 10)
  t.match(joined, { ok: true, created: false, session: { participants: [sam, alex] } }, 'a session with people in it can still be joined')
  t.equal(store.pinnedBytes, before + 128 + 12)
  t.match(await store.join('live', sam, 10), { ok: true, created: false }, 'and joined again')
  t.same(await store.join('live', { userId: 'u3', playerName: 'Kim' }, 2), { ok: false, reason: 'full' }, 'full is still full')

  const c3 = await store.createCompanion(persona)
  t.same(await ids(store, [c2.id, 'empty', c3.id]), [false, true, true], 'companions still come and go, oldest first, within the reserve')
  t.same(evictions, [1, 1])

  await store.leave('live', 'u1')
  t.equal(store.pinnedBytes, LIVE + MESSAGE + SHORT + 140 - 138, 'still pinned by Alex')
  await store.leave('live', 'u2')
  t.equal(store.pinnedBytes, 0)
  t.same(await ids(store, ['empty', c3.id, 'live']), [false, true, true], 'idle now, the room takes the total over the budget: the oldest idle session made way')
  t.same(evictions, [1, 1, 1])
  t.match(await store.join('new', alex, 10), { ok: true, created: true }, 'below the budget again, new sessions can be joined')
  t.equal(await store.get('live'), undefined, 'and the idle room made way for it')
  await store.leave('new', 'u2')
  clock.now = 10 + 1000
  t.equal(store.sweep(), 1, 'the last room expires')
  t.same(await store.counts(), { companion: 0, multiplayer: 0 })
  t.equal(store.bytes, 0)
  t.equal(store.pinnedBytes, 0)
})

t.test('capacity: a join is refused when it would take pinned bytes past the budget, not one byte before', async (t) => {
  const LIVE = 512 + 8 + (128 + 4 + 6)
  for (const [maxBytes, reason] of [[2 * LIVE - 1, 'capacity'], [2 * LIVE, undefined]] as const) {
    const { store } = setup(t, { maxBytes })
    await store.join('live', sam, 10)
    t.equal(store.pinnedBytes, LIVE)
    t.equal((await store.join('next', sam, 10) as { reason?: string }).reason, reason, `budget ${maxBytes}`)
    t.ok(store.pinnedBytes <= maxBytes)
  }
  const { store } = setup(t)
  for (let i = 0; i < 100; i++) t.equal((await store.join(`r${i}`, sam, 10)).ok, true, 'no budget, no capacity limit')
})

t.test('every write counts: sessions people are in never grow past the budget, whatever the order of writes', async (t) => {
  const maxBytes = 64 * 1024
  const { store } = setup(t, { maxBytes })
  const refused: string[] = []
  for (let room = 0; room < 5; room++) await store.join(`room-${room}`, { userId: `u${room}`, playerName: 'P' }, 10)
  for (let i = 0; i < 250; i++) {
    const code = `room-${i % 5}`
    await store.recordEvent(code, chatMessage(code, 'x'.repeat(2000)), { keep: 50 }).catch((error: Error & { code: string }) => refused.push(error.code))
    t.ok(store.pinnedBytes <= maxBytes, `write ${i}: ${store.pinnedBytes} bytes`)
  }
  t.ok(refused.length > 200, `${refused.length} refused`)
  t.same([...new Set(refused)], ['SESSION_FULL'])
  t.equal(store.bytes, store.pinnedBytes)
})

t.test('one owner\'s sessions hold at most its share: its own oldest make way, others\' stay', async (t) => {
  const { store, evictions } = setup(t, { maxBytes: 100 * COMPANION_BYTES, maxBytesPerOwner: 10 * COMPANION_BYTES })
  const victim = await store.createCompanion(persona, 'victim')
  await store.join('victim-room', sam, 10, 'victim')
  await store.recordEvent('victim-room', chatMessage('victim-room', 'hello'), { keep: 50 })
  await store.leave('victim-room', 'u1')
  const attacker: string[] = []
  for (let i = 0; i < 500; i++) attacker.push((await store.createCompanion(persona, 'attacker')).id)
  t.same(await ids(store, [victim.id, 'victim-room']), [true, true], 'the other owner\'s sessions stay')
  t.same(await ids(store, [attacker[0], attacker[489], attacker[490], attacker[499]]), [false, false, true, true], 'the attacker keeps its newest 10')
  t.equal(evictions.length, 490)
  t.ok(store.bytes < 100 * COMPANION_BYTES)

  const pinnedByAttacker = await store.join('attacker-live', { userId: 'a', playerName: 'A' }, 10, 'attacker')
  t.equal(pinnedByAttacker.ok, true)
  for (let i = 0; i < 20; i++) await store.createCompanion(persona, 'attacker')
  t.ok(await store.get('attacker-live'), 'its pinned session is not evicted for its own new ones')
  const unowned = await store.createCompanion(persona)
  t.ok(await store.get(unowned.id), 'a session without an owner is not accounted per owner')
  t.ok(await store.get(victim.id))
})

t.test('the session being written is never evicted, even when it alone exceeds the budget', async (t) => {
  const { store, evictions } = setup(t, { maxBytes: 1000 })
  const other = await store.join('other', sam, 10)
  await store.leave('other', 'u1')
  t.equal(other.ok, true)
  const a = await store.createCompanion(persona)
  t.equal(await store.get('other'), undefined, 'the older empty room made way')
  const written = await store.appendTurns(a.id, [{ role: 'user', text: 'x'.repeat(2000), timestamp: 0 }], 20)
  t.equal(written?.history.length, 1)
  t.ok(await store.get(a.id))
  t.equal(store.bytes, COMPANION_BYTES + 128 + 4000)
  t.same(evictions, [1], 'nothing else to evict, so no second report')
  const b = await store.createCompanion(persona)
  t.same(await ids(store, [a.id, b.id]), [false, true])
  t.equal(store.bytes, COMPANION_BYTES)
})

t.test('the total returns to 0 when everything is deleted, expired or swept', async (t) => {
  const { store, clock } = setup(t)
  const a = await store.createCompanion(persona)
  const b = await store.createCompanion(persona)
  const c = await store.createCompanion(persona)
  for (const session of [a, b, c]) {
    await store.appendTurns(session.id, [{ role: 'user', text: 'héllo 👋', timestamp: 0 }, { role: 'model', text: 'hi', timestamp: 0 }], 3)
    await store.appendTurns(session.id, [{ role: 'user', text: 'more', timestamp: 0 }], 3)
  }
  await store.join('r1', sam, 10)
  await store.join('r1', { userId: 'u2', playerName: 'Alex' }, 10)
  await store.join('r1', sam, 10)
  t.same(await store.join('r1', { userId: 'u3', playerName: 'Kim' }, 2), { ok: false, reason: 'full' })
  for (let i = 0; i < 5; i++) await store.recordEvent('r1', chatMessage('r1', `message ${i}`), { keep: 3 })
  await store.join('r2', sam, 10)
  t.ok(store.bytes > 0)

  t.equal(await store.delete(a.id), true)
  t.equal(await store.delete(a.id), false)
  await store.leave('r1', 'u1')
  await store.leave('r1', 'u2')
  await store.leave('r1', 'nobody')
  await store.leave('r2', 'u1')
  clock.now = 1000
  t.equal(await store.get(b.id), undefined, 'expired on read')
  t.equal(store.sweep(), 3, 'c and both rooms')
  t.same(await store.counts(), { companion: 0, multiplayer: 0 })
  t.equal(store.bytes, 0)
  t.equal(store.pinnedBytes, 0)

  await store.join('r3', sam, 10)
  t.ok(store.pinnedBytes > 0)
  await store.createCompanion(persona)
  await store.close()
  t.equal(store.bytes, 0, 'and after close')
  t.equal(store.pinnedBytes, 0)
})

t.test('10,000 sessions under a small budget keep the total within it', async (t) => {
  const maxBytes = 64 * 1024
  const { store, evictions } = setup(t, { maxBytes })
  let highest = 0
  for (let i = 0; i < 10_000; i++) {
    if (i % 10 === 0) {
      const code = `room-${i}`
      await store.join(code, sam, 10)
      for (let m = 0; m < 5; m++) await store.recordEvent(code, chatMessage(code, 'x'.repeat(500)), { keep: 50 })
      await store.leave(code, 'u1')
    } else {
      const session = await store.createCompanion(persona)
      await store.appendTurns(session.id, [{ role: 'user', text: 'hi', timestamp: 0 }, { role: 'model', text: 'x'.repeat(300), timestamp: 0 }], 20)
    }
    highest = Math.max(highest, store.bytes)
  }
  t.ok(highest <= maxBytes, `the highest total, ${highest}, is within ${maxBytes}`)
  const { companion, multiplayer } = await store.counts()
  t.ok(companion + multiplayer < 100, `${companion + multiplayer} sessions kept`)
  t.ok(companion + multiplayer > 10, 'and the newest are kept')
  t.ok(evictions.length > 9000)
  t.equal(evictions.reduce((sum, count) => sum + count, 0), 10_000 - companion - multiplayer, 'every other session was evicted')
})

t.test('regenerated replies count in the budget with their alternatives; idempotency records have their own share', async (t) => {
  const { store } = setup(t, { maxBytes: 64 * 1024 })
  const { id } = await store.createCompanion(persona)
  await store.appendTurns(id, [{ role: 'user', text: 'hi', timestamp: 0 }, { role: 'model', text: 'a'.repeat(100), timestamp: 0 }], 20)
  t.equal(store.bytes, COMPANION_BYTES + (128 + 4) + (128 + 200))
  await store.reviseReply(id, { role: 'model', text: 'b'.repeat(50), timestamp: 1 }, 20)
  t.equal(store.bytes, COMPANION_BYTES + (128 + 4) + (128 + 100 + 200), 'the reply and its alternative')
  for (let i = 0; i < 5; i++) await store.reviseReply(id, { role: 'model', text: 'c'.repeat(10), timestamp: 2 }, 20)
  t.equal(store.bytes, COMPANION_BYTES + (128 + 4) + (128 + 20 + 4 * 20), 'four alternatives of 10 characters: the older ones no longer count')

  // An eighth of the 64 KiB budget, 8,192 bytes, holds three records of
  // 128 + 2 × (2-character key + 1-character fingerprint + 1,000-character body) = 2,134 bytes.
  const body = 'x'.repeat(1000)
  for (let i = 0; i < 10; i++) {
    const key = `k${i}`
    await store.beginRequest(key, 'f', 1000)
    await store.endRequest(key, { state: 'done', fingerprint: 'f', response: { statusCode: 200, body } }, 1000)
  }
  for (const key of ['k7', 'k8', 'k9']) t.match(await store.beginRequest(key, 'f', 1000), { claimed: false, record: { state: 'done' } }, `${key} is kept`)
  t.match(await store.beginRequest('k6', 'f', 1000), { claimed: true }, 'older records were forgotten early')
  t.equal(store.bytes, COMPANION_BYTES + (128 + 4) + (128 + 20 + 4 * 20), 'and sessions are not evicted for them')
})

t.test('SESSION_MEMORY_MB: 256 by default, an integer ≥ 1', async (t) => {
  t.equal(loadConfig({}).SESSION_MEMORY_MB, 256)
  t.equal(loadConfig({ SESSION_MEMORY_MB: '1' }).SESSION_MEMORY_MB, 1)
  for (const value of ['0', '1.5', 'lots']) {
    t.throws(() => loadConfig({ SESSION_MEMORY_MB: value }), { name: 'ConfigError', message: 'Invalid configuration: SESSION_MEMORY_MB must be an integer ≥ 1' })
  }
})

const EVICTING = 'session memory budget (SESSION_MEMORY_MB) reached: the least recently active sessions are being evicted before their TTL'

t.test('through the app: SESSION_MEMORY_MB=1 evicts the oldest companion sessions, warned once', async (t) => {
  const { app, stdout } = await buildAppWithLog(t, { SESSION_MEMORY_MB: 1, RATE_LIMIT_MAX: 100000, AI_RATE_LIMIT_MAX: 100000, SLOW_DOWN_AFTER: 100000 })
  t.equal(app.ai.status().provider, 'offline')
  const companionConfig = { name: 'N'.repeat(50), personality: 'p'.repeat(1000), identity: 'i'.repeat(1000), gender: 'g'.repeat(20), role: 'r'.repeat(500) }
  // 512 + 2 × (22 id + 2,570 persona) = 5,696 bytes each: 184 fit in 1 MiB.
  const created: string[] = []
  for (let i = 0; i < 400; i++) {
    // From 40 addresses, each within its creation rate and its share of the budget.
    const response = await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig }, remoteAddress: `127.0.0.${1 + i % 40}` })
    if (response.statusCode !== 200) t.fail(`initialize ${i}: ${response.statusCode}`)
    created.push(response.json().sessionId)
  }
  t.equal(new Set(created).size, 400, 'all 400 created')
  t.same(await app.sessions.counts(), { companion: 184, multiplayer: 0 })
  for (const index of [0, 215]) {
    const gone = await app.inject(`/api/sessions/${created[index]}`)
    t.equal(gone.statusCode, 404, `session ${index} was evicted`)
    t.same(gone.json(), {
      sessionId: created[index], isActive: false, participantCount: 0, error: 'Session not found or expired', code: 'SESSION_NOT_FOUND', statusCode: 404
    })
  }
  for (const index of [216, 399]) {
    const kept = await app.inject(`/api/sessions/${created[index]}`)
    t.equal(kept.statusCode, 200, `session ${index} is kept`)
    t.equal(kept.json().companionName, 'N'.repeat(50))
  }
  const warnings = stdout().filter((line) => line.level === 'warn' && line.msg === EVICTING)
  t.equal(warnings.length, 1, 'once, not per evicted session')
  t.match(warnings[0], { sessionMemoryMB: 1, evicted: 1 })
  t.notMatch(JSON.stringify(stdout()), 'pppp', 'no persona text in the log')
})
t.test('recordEvent: consecutive seqs; a clientMsgId is remembered 10 minutes, counted in the budget, then forgotten', async (t) => {
  const { store, clock } = setup(t, { ttlMs: 3_600_000 })
  await store.join('room', sam, 10)
  const empty = store.bytes
  const first = await store.recordEvent('room', chatMessage('room', 'hi'), { keep: 50, clientMsgId: 'abc' })
  const frame = first?.duplicate === false ? first.frame : ''
  t.match(JSON.parse(frame), { event: 'chat message', data: { text: 'hi', seq: 1 } })
  t.match(frame, /,"seq":1\}\}$/, 'seq last')
  // 128 + 2 × (116 envelope + 4 code + 36 id + 2 text + 36 sender + 50 name + 24 timestamp + 1 seq), plus 128 + 2 × 3 for the id.
  t.equal(store.bytes - empty, 128 + 2 * 269 + 128 + 6)

  clock.now = 10 * 60_000 - 1
  t.same(await store.recordEvent('room', chatMessage('room', 'hi'), { keep: 50, clientMsgId: 'abc' }), { duplicate: true, seq: 1 })
  t.match(await store.recordEvent('room', chatMessage('room', 'other'), { keep: 50, clientMsgId: 'def' }), { duplicate: false, seq: 2 })
  t.match(await store.recordEvent('room', chatMessage('room', 'no id'), { keep: 50 }), { duplicate: false, seq: 3 })
  const { history } = await store.get('room') as MultiplayerSession
  t.same(history.map((kept) => JSON.parse(kept).data.seq), [1, 2, 3])
  t.equal(history[0], frame, 'kept as delivered')

  clock.now = 10 * 60_000
  t.match(await store.recordEvent('room', chatMessage('room', 'hi'), { keep: 50, clientMsgId: 'abc' }), { duplicate: false, seq: 4 },
    'after 10 minutes the same id is a new message')
  t.equal(await store.recordEvent('gone', chatMessage('gone', 'hi'), { keep: 50 }), undefined)
  await store.leave('room', 'u1')
  clock.now = 3 * 3_600_000
  store.sweep()
  t.equal(store.bytes, 0, 'remembered ids leave with their session')
})
