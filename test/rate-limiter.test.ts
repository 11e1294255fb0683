import { randomUUID } from 'node:crypto'
import t from 'tap'
import { createMemoryCounterStore, type CounterStore, type WindowHit } from '../src/services/limits/counter-store.js'
import { createRateLimiter, type Done } from '../src/services/limits/rate-limiter.js'
import { createSlowDown } from '../src/services/limits/slow-down.js'
import { buildTestApp } from './helper.js'
import { startRedis } from './redis-server.js'

/*
 * The limiter on its own (fake stores, a recording header sink), then through
 * the whole app: one count per request serves the general limit and the
 * slow-down, in memory and in a real Redis.
 */

const WINDOW_MS = 60_000

/** A store that counts in memory and records every hit, answering synchronously or with a promise. */
function recordingStore (async = false) {
  const inner = createMemoryCounterStore({ windowMs: WINDOW_MS, maxKeys: 100 })
  const hits: string[] = []
  const store: CounterStore = {
    hit: (key) => {
      hits.push(key)
      const hit = { ...inner.hit(key) }
      return async ? Promise.resolve(hit) : hit
    },
    close: () => inner.close()
  }
  return { store, hits }
}

function headerSink () {
  const headers: Record<string, number> = {}
  return { headers, header: (name: string, value: number) => { headers[name] = value } }
}

/** Runs one admission; `sync` says whether `done` was called before it returned. */
function run (admit: (key: string, sink: ReturnType<typeof headerSink>, done: Done) => void, key = 'a') {
  const sink = headerSink()
  let sync = true
  let called = false
  const outcome = new Promise<{ error?: Error, sync: boolean }>((resolve) => {
    admit(key, sink, (error) => {
      called = true
      resolve({ error, sync })
    })
  })
  sync = called
  return outcome.then((result) => ({ ...result, headers: sink.headers }))
}

const failing = (error: Error): CounterStore => ({ hit: () => { throw error }, close: async () => {} })
const rejecting = (error: Error): CounterStore => ({ hit: async (): Promise<WindowHit> => { throw error }, close: async () => {} })

t.test('one count per request serves both the general limit and the slow-down', async (t) => {
  const { store, hits } = recordingStore()
  const ai = recordingStore()
  const limiter = createRateLimiter({
    general: { store, max: 3 },
    ai: { store: ai.store, max: 10 },
    slowDown: createSlowDown({ after: 1, delayMs: 100, maxDelayMs: 1000 }),
    onStoreError: () => t.fail('no store error')
  })
  t.teardown(() => limiter.close())

  const first = await run(limiter.admit)
  t.same([first.error, first.sync, first.headers['ratelimit-remaining']], [undefined, true, 2], 'undelayed: done is called synchronously')
  t.equal(first.headers['ratelimit-limit'], 3)
  t.ok(first.headers['ratelimit-reset'] === 60, 'the reset is the window in seconds')

  let started = performance.now()
  const second = await run(limiter.admit)
  t.same([second.error, second.sync, second.headers['ratelimit-remaining']], [undefined, false, 1])
  t.ok(performance.now() - started >= 80, 'the 2nd request (1 past SLOW_DOWN_AFTER) is delayed by the same count')
  started = performance.now()
  t.equal((await run(limiter.admit)).headers['ratelimit-remaining'], 0)
  t.ok(performance.now() - started >= 180, 'the 3rd waits two steps')

  const refused = await run(limiter.admit)
  t.match(refused.error, { code: 'RATE_LIMITED', statusCode: 429 })
  t.ok(refused.sync, 'a refusal is not delayed')
  t.same(refused.headers['ratelimit-remaining'], 0)
  t.same(hits, ['a', 'a', 'a', 'a'], 'four requests, four hits of one counter')
  t.same(ai.hits, [], 'the AI counter is for AI routes only')
})

t.test('the AI limit: counted after the general one, headers of the limit closer to refusing', async (t) => {
  const general = recordingStore()
  const ai = recordingStore(true)
  const limiter = createRateLimiter({ general: { store: general.store, max: 5 }, ai: { store: ai.store, max: 2 }, onStoreError: () => t.fail('no store error') })
  t.teardown(() => limiter.close())

  const first = await run(limiter.admitAi)
  t.same([first.headers['ratelimit-limit'], first.headers['ratelimit-remaining']], [2, 1], 'AI: 1 left, general: 4 left')
  await run(limiter.admitAi)
  const refused = await run(limiter.admitAi)
  t.match(refused.error, { code: 'RATE_LIMITED' })
  t.same([refused.headers['ratelimit-limit'], refused.headers['ratelimit-remaining']], [2, 0])

  const plain = await run(limiter.admit)
  t.same([plain.headers['ratelimit-limit'], plain.headers['ratelimit-remaining']], [5, 1], 'every AI request counted against the general limit')
  t.match((await run(limiter.admitAi)).error, { code: 'RATE_LIMITED' }, 'the 5th general request, refused by the AI limit')
  t.equal(ai.hits.length, 4)
  const general6th = await run(limiter.admitAi)
  t.match([general6th.error, general6th.headers['ratelimit-limit']], [{ code: 'RATE_LIMITED' }, 5], 'the 6th, refused by the general limit')
  t.equal(ai.hits.length, 4, 'which never reached the AI counter')
})

t.test('count: refused past the limit, never delayed', async (t) => {
  const limiter = createRateLimiter({
    general: { store: recordingStore().store, max: 1 },
    ai: { store: recordingStore().store, max: 1 },
    slowDown: createSlowDown({ after: 0, delayMs: 10_000, maxDelayMs: 10_000 }),
    onStoreError: () => t.fail('no store error')
  })
  t.teardown(() => limiter.close())
  t.same(await run(limiter.count), { error: undefined, sync: true, headers: { 'ratelimit-limit': 1, 'ratelimit-remaining': 0, 'ratelimit-reset': 60 } })
  t.match((await run(limiter.count)).error, { code: 'RATE_LIMITED' })
})

t.test('a failing store lets the request through at once, without headers or delay (fail open)', async (t) => {
  const failure = new Error('store unreachable')
  const errors: unknown[] = []
  for (const store of [failing(failure), rejecting(failure)]) {
    const limiter = createRateLimiter({
      general: { store, max: 0 },
      ai: { store, max: 0 },
      slowDown: createSlowDown({ after: 0, delayMs: 10_000, maxDelayMs: 10_000 }),
      onStoreError: (error) => errors.push(error)
    })
    t.teardown(() => limiter.close())
    const outcome = await run(limiter.admitAi)
    t.same([outcome.error, outcome.headers], [undefined, {}])
  }
  t.same(errors, [failure, failure, failure, failure], 'each failure is reported, general and AI alike')
})

t.test('through the app: one count serves the limit and the slow-down', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_MAX: 3, SLOW_DOWN_AFTER: 1, SLOW_DOWN_DELAY_MS: 300, SLOW_DOWN_MAX_DELAY_MS: 1000 })
  const timings: Array<[number, string | undefined, number]> = []
  for (let n = 1; n <= 4; n++) {
    const started = performance.now()
    const response = await app.inject({ method: 'GET', url: '/', remoteAddress: '203.0.113.5' })
    timings.push([response.statusCode, response.headers['ratelimit-remaining'] as string | undefined, performance.now() - started])
  }
  t.same(timings.map(([status, remaining]) => [status, remaining]), [[200, '2'], [200, '1'], [200, '0'], [429, '0']])
  // Lower bounds only, 20 ms early for timer rounding: a loaded machine makes anything slower.
  const [, second, third, fourth] = timings.map(([, , ms]) => ms) as [number, number, number, number]
  t.ok(second >= 280 && third >= 580, `the 2nd and 3rd are slowed by the count the limit shows (${timings.map(([, , ms]) => Math.round(ms)).join(', ')} ms)`)
  t.ok(fourth < third, 'the refused 4th is not delayed')
})

t.test('through the app with Redis: one key per client, one count per request', async (t) => {
  const redis = await startRedis(t)
  const prefix = `t${randomUUID().slice(0, 8)}:`
  const app = await buildTestApp(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, SLOW_DOWN_AFTER: 1, SLOW_DOWN_DELAY_MS: 10, SLOW_DOWN_MAX_DELAY_MS: 10 }, (app) => {
    app.get('/api/ai-companion/thing', { config: { aiRateLimit: true } }, async () => ({ ok: true }))
  })
  for (let n = 0; n < 3; n++) await app.inject({ method: 'GET', url: '/', remoteAddress: '203.0.113.6' })
  await app.inject({ method: 'GET', url: '/api/ai-companion/thing', remoteAddress: '203.0.113.6' })
  const keys = (await redis.command('KEYS', `${prefix}rate*`)).split('\r\n').filter((line) => line.startsWith(prefix)).sort()
  t.same(keys, [`${prefix}rate-ai:203.0.113.6`, `${prefix}rate:203.0.113.6`], 'the general and the AI counter, nothing for the slow-down')
  t.match(await redis.command('GET', `${prefix}rate:203.0.113.6`), /\r\n4\r\n$/, 'four requests, counted once each')
})
