import type { Test } from 'tap'
import type { SessionStore, StoredTurn } from '../src/services/sessions/store.js'

/*
 * The companion half of the session store contract (SPEC §2.4–2.6), one
 * suite for every implementation (keyv's test-suite idea): kept turns,
 * regenerated replies, the reply lock and idempotency records. `advance`
 * moves the store's clock: a fake clock for memory, real waiting for Redis.
 */

export interface StoreUnderTest {
  store: SessionStore
  advance: (ms: number) => Promise<void>
}

const persona = { name: 'Ava', personality: 'warm', identity: 'a partner', gender: '', role: 'friend' }
const user = (text: string, timestamp = 1): StoredTurn => ({ role: 'user', text, timestamp })
const model = (text: string, timestamp = 2): StoredTurn => ({ role: 'model', text, timestamp })

async function history (store: SessionStore, id: string) {
  const session = await store.get(id)
  return session?.kind === 'companion' ? session.history : undefined
}

export function companionStoreSuite (t: Test, make: (t: Test) => Promise<StoreUnderTest>): void {
  t.test('turns are kept with their timestamps, the last `keep` of them', async (t) => {
    const { store } = await make(t)
    const { id } = await store.createCompanion(persona)
    await store.appendTurns(id, [model('hello', 5)], 3)
    await store.appendTurns(id, [user('hi', 6), model('how are you?', 7)], 3)
    t.same((await history(store, id)), [model('hello', 5), user('hi', 6), model('how are you?', 7)])
    await store.appendTurns(id, [user('fine', 8)], 3)
    t.same((await history(store, id)), [user('hi', 6), model('how are you?', 7), user('fine', 8)], 'the oldest went')
    t.equal((await store.get(id))?.messageCount, 4, 'every turn ever kept counts')
  })

  t.test('reviseReply: answers a trailing user turn, or replaces the last reply keeping the last 4 replaced', async (t) => {
    const { store } = await make(t)
    const { id } = await store.createCompanion(persona)
    await store.appendTurns(id, [model('greeting', 1), user('hi', 2)], 10)
    const answered = await store.reviseReply(id, model('first', 3), 10)
    t.same(answered?.history, [model('greeting', 1), user('hi', 2), model('first', 3)], 'after a failed reply: its first reply, no alternatives')
    t.equal(answered?.messageCount, 3)
    await store.reviseReply(id, model('second', 4), 10)
    t.same((await history(store, id))?.at(-1), { role: 'model', text: 'second', timestamp: 4, alternatives: ['first'] })
    for (const [index, text] of ['third', 'fourth', 'fifth', 'sixth'].entries()) await store.reviseReply(id, model(text, 5 + index), 10)
    const session = await store.get(id)
    t.same(session?.history, [model('greeting', 1), user('hi', 2),
      { role: 'model', text: 'sixth', timestamp: 8, alternatives: ['second', 'third', 'fourth', 'fifth'] }], 'at most 4, oldest dropped')
    t.equal(session?.messageCount, 3, 'a replaced reply is no new message')
    await store.appendTurns(id, [user('next', 9), model('reply', 10)], 10)
    t.same((await history(store, id))?.at(-3)?.alternatives, ['second', 'third', 'fourth', 'fifth'], 'alternatives stay with their turn')
    t.same((await history(store, id))?.at(-1), model('reply', 10), 'a new turn has none')
    t.equal(await store.reviseReply('nobody', model('x'), 10), undefined, 'unknown session')
  })

  t.test('reviseReply keeps the last `keep` turns when it appends', async (t) => {
    const { store } = await make(t)
    const { id } = await store.createCompanion(persona)
    await store.appendTurns(id, [model('greeting', 1), user('hi', 2)], 2)
    await store.reviseReply(id, model('reply', 3), 2)
    t.same((await history(store, id)), [user('hi', 2), model('reply', 3)])
  })

  t.test('the reply lock: one holder at a time, freed by its own token or by its TTL', async (t) => {
    const { store, advance } = await make(t)
    t.equal(await store.lockReply('s1', 'a', 1000), true)
    t.equal(await store.lockReply('s1', 'b', 1000), false, 'held')
    t.equal(await store.lockReply('s2', 'b', 1000), true, 'per session')
    await store.unlockReply('s1', 'b')
    t.equal(await store.lockReply('s1', 'c', 1000), false, 'another token does not free it')
    await store.unlockReply('s1', 'a')
    t.equal(await store.lockReply('s1', 'c', 200), true, 'freed by its holder')
    await advance(300)
    t.equal(await store.lockReply('s1', 'd', 1000), true, 'a holder that never frees it loses it after its TTL')
    await store.unlockReply('s1', 'c')
    t.equal(await store.lockReply('s1', 'e', 1000), false, 'the expired holder cannot free the new holder\'s lock')
  })

  t.test('idempotency records: claimed once, then running, done or failed, each kept for its TTL', async (t) => {
    const { store, advance } = await make(t)
    t.same(await store.beginRequest('k1', 'f1', 5000), { claimed: true })
    t.same(await store.beginRequest('k1', 'f1', 5000), { claimed: false, record: { state: 'running', fingerprint: 'f1' } })
    t.same(await store.beginRequest('k1', 'f2', 5000), { claimed: false, record: { state: 'running', fingerprint: 'f1' } })
    const response = { statusCode: 200, body: '{"message":"héllo 💞"}' }
    await store.endRequest('k1', { state: 'done', fingerprint: 'f1', response }, 5000)
    t.same(await store.beginRequest('k1', 'f1', 5000), { claimed: false, record: { state: 'done', fingerprint: 'f1', response } })

    t.same(await store.beginRequest('k2', 'f1', 5000), { claimed: true }, 'keys are independent')
    await store.endRequest('k2', { state: 'failed', fingerprint: 'f1', sessionId: 's1' }, 5000)
    t.same(await store.beginRequest('k2', 'f2', 5000), { claimed: false, record: { state: 'failed', fingerprint: 'f1', sessionId: 's1' } }, 'a failed key with another body is not claimed')
    t.same(await store.beginRequest('k2', 'f1', 5000), { claimed: true, retrying: { state: 'failed', fingerprint: 'f1', sessionId: 's1' } },
      'a failed attempt is run again, knowing what it failed on')
    t.same(await store.beginRequest('k2', 'f1', 5000), { claimed: false, record: { state: 'running', fingerprint: 'f1' } })

    t.same(await store.beginRequest('k3', 'f1', 200), { claimed: true })
    await store.endRequest('k1', { state: 'done', fingerprint: 'f1', response }, 200)
    await advance(300)
    t.same(await store.beginRequest('k3', 'f1', 5000), { claimed: true }, 'a running claim whose instance died expires')
    t.same(await store.beginRequest('k1', 'f2', 5000), { claimed: true }, 'a done record expires')
  })
}
