import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { createMemoryCounterStore, type CounterStore } from '../src/services/limits/counter-store.js'
import { createRedisCounterStore } from '../src/services/limits/redis-counter-store.js'
import { createRedisConnections } from '../src/services/redis/connection.js'
import { redisKeys } from '../src/services/redis/keys.js'
import { freePort, startRedis, type RedisServer } from './redis-server.js'

/*
 * The rate limits' counters: one behavioural suite, two stores (memory, and
 * Redis against a real redis-server), then what only each has: the memory
 * store's bound on clients and its sweep; the Redis store's keys and TTLs.
 */

const silent = { info: () => undefined, warn: () => undefined }
/** Slack for the time between a hit and the clock read after it. */
const SLACK_MS = 100

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

async function redisStore (t: Test, windowMs: number) {
  const connections = createRedisConnections({ url: redis.url, commandTimeoutMs: 5000, log: silent })
  t.teardown(() => connections.close())
  t.equal(await connections.whenReady(5000), 'ok')
  const keys = redisKeys(`t${randomUUID().slice(0, 8)}:`)
  const store = createRedisCounterStore({ redis: connections.client, keyOf: keys.rateLimit, windowMs })
  t.teardown(() => store.close())
  return { store, keys, client: connections.client }
}

const factories: Record<string, (t: Test, windowMs: number) => Promise<CounterStore>> = {
  memory: async (t, windowMs) => {
    const store = createMemoryCounterStore({ windowMs, maxKeys: 100 })
    t.teardown(() => store.close())
    return store
  },
  redis: async (t, windowMs) => (await redisStore(t, windowMs)).store
}

for (const [name, create] of Object.entries(factories)) {
  t.test(`${name} store`, async (t) => {
    t.test('counts per client per window, and says when the window ends', async (t) => {
      const store = await create(t, 60_000)
      const before = Date.now()
      const first = await store.hit('203.0.113.1')
      t.equal(first.count, 1)
      t.ok(first.resetAt >= before + 60_000 - SLACK_MS && first.resetAt <= Date.now() + 60_000 + SLACK_MS, 'the first hit starts a full window')
      const counts = []
      for (const client of ['203.0.113.1', '203.0.113.2', '203.0.113.1']) counts.push((await store.hit(client)).count)
      t.same(counts, [2, 1, 3])
      const later = await store.hit('203.0.113.1')
      t.ok(Math.abs(later.resetAt - first.resetAt) <= SLACK_MS, 'later hits end with the same window')
    })

    t.test('a new window starts at the first hit after the old one ended', async (t) => {
      const store = await create(t, 300)
      await store.hit('a')
      t.equal((await store.hit('a')).count, 2)
      await sleep(400)
      const fresh = await store.hit('a')
      t.equal(fresh.count, 1)
      t.ok(fresh.resetAt > Date.now() + 300 - SLACK_MS)
    })
  })
}

t.test('memory store: answers synchronously', async (t) => {
  const store = createMemoryCounterStore({ windowMs: 1000, maxKeys: 10 })
  t.teardown(() => store.close())
  t.notOk(store.hit('a') instanceof Promise)
})

t.test('memory store: ended windows are swept and the number of clients is capped', async (t) => {
  let now = 0
  const store = createMemoryCounterStore({ windowMs: 1000, maxKeys: 3, now: () => now })
  t.teardown(() => store.close())
  store.hit('a')
  now = 100
  store.hit('b')
  now = 200
  store.hit('c')
  t.equal(store.size, 3)
  now = 300
  store.hit('d')
  t.equal(store.size, 3, 'never more than maxKeys')
  t.equal(store.hit('c').count, 2, 'the newer clients were kept')
  t.equal(store.hit('a').count, 1, 'the client whose window ends soonest was forgotten (and now b is)')
  t.equal(store.size, 3)
  now = 1250
  t.equal(store.sweep(), 1, 'only the window that ended (c, since 1200) is swept')
  t.equal(store.size, 2)
  now = 5000
  t.equal(store.sweep(), 2)
  t.equal(store.size, 0, 'nothing is left once every window ended')
})

t.test('redis store: one key per client, expiring with its window', async (t) => {
  const { store, keys, client } = await redisStore(t, 60_000)
  await store.hit('2001:db8::')
  await store.hit('2001:db8::')
  t.equal(await client.get(keys.rateLimit('2001:db8::')), '2')
  const ttl = await client.pttl(keys.rateLimit('2001:db8::'))
  t.ok(ttl > 60_000 - 5000 && ttl <= 60_000, `the key expires with the window (${ttl} ms left)`)
  t.same(await client.keys(`${keys.prefix}*`), [keys.rateLimit('2001:db8::')], 'nothing else is written')
})

t.test('redis store: an unreachable Redis rejects at once', async (t) => {
  // Nothing listens on this port.
  const connections = createRedisConnections({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 5000, log: silent })
  t.teardown(() => connections.close())
  const store = createRedisCounterStore({ redis: connections.client, keyOf: (client) => client, windowMs: 1000 })
  await t.rejects(Promise.resolve(store.hit('a')))
})
