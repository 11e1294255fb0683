import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { App } from '../src/app.js'
import { createSlowDown, delayFor } from '../src/services/limits/slow-down.js'
import { buildTestApp } from './helper.js'
import { freePort } from './redis-server.js'

/*
 * SPEC §5 progressive speed limiting: the delay on its own (its count is the
 * general rate limit's: test/rate-limiter.test.ts), then through the whole
 * app with delays measured against tolerant lower bounds, and upper bounds a
 * whole delay step above them, so a busy two-core machine trips neither.
 *
 * A timer counts from the event loop's cached clock, which can lag the real
 * one by however long the current loop turn has run: measured from a stale
 * turn, a timer seems to fire early. `timed` starts requests on a fresh turn;
 * EARLY_MS covers the remaining millisecond rounding and small stalls.
 */

const EARLY_MS = 20

const get = (app: { inject: App['inject'] }, url: string, remoteAddress = '203.0.113.1') =>
  app.inject({ method: 'GET', url, remoteAddress })

async function timed<T> (start: () => Promise<T>): Promise<{ result: T, ms: number }> {
  await new Promise((resolve) => setImmediate(resolve))
  const started = performance.now()
  const result = await start()
  return { result, ms: performance.now() - started }
}

t.test('delayFor: (n − after) × delay, capped (SPEC §5 defaults)', async (t) => {
  const defaults = { after: 50, delayMs: 500, maxDelayMs: 10000 }
  t.same([1, 50, 51, 52, 60, 70, 1000].map((n) => delayFor(n, defaults)), [0, 0, 500, 1000, 5000, 10000, 10000])
  t.same([1, 2, 3].map((n) => delayFor(n, { after: 0, delayMs: 100, maxDelayMs: 250 })), [100, 200, 250])
})

t.test('slow-down: proceeds at once or after the delay of the n-th request', async (t) => {
  const slowDown = createSlowDown({ after: 1, delayMs: 200, maxDelayMs: 1000 })

  let proceeded = false
  slowDown.proceedAfter(1, () => { proceeded = true })
  t.ok(proceeded, 'an undelayed request proceeds synchronously')

  const { ms } = await timed(() => new Promise<void>((resolve) => {
    slowDown.proceedAfter(2, resolve)
    t.equal(slowDown.waiting, 1)
  }))
  t.ok(ms >= 200 - EARLY_MS, `the second request waited ${Math.round(ms)} ms`)
  t.equal(slowDown.waiting, 0, 'no timer is left behind')
})

t.test('slow-down: close releases waiting requests and delays none after', async (t) => {
  const slowDown = createSlowDown({ after: 0, delayMs: 10000, maxDelayMs: 10000 })
  const started = performance.now()
  const released = new Promise<void>((resolve) => slowDown.proceedAfter(1, resolve))
  t.equal(slowDown.waiting, 1)
  slowDown.close()
  await released
  t.ok(performance.now() - started < 1000, 'the waiting request proceeded at once')
  t.equal(slowDown.waiting, 0)
  let proceeded = false
  slowDown.proceedAfter(5, () => { proceeded = true })
  t.ok(proceeded, 'after close, requests proceed at once')
})

t.test('defaults: the 51st request in the window waits 500 ms, the 52nd 1000 ms', async (t) => {
  const app = await buildTestApp(t)
  for (let n = 1; n <= 50; n++) {
    const { result, ms } = await timed(() => get(app, '/'))
    t.equal(result.statusCode, 200)
    t.ok(ms < 500 - EARLY_MS, `request ${n} not delayed (${Math.round(ms)} ms)`)
  }
  const fiftyFirst = await timed(() => get(app, '/'))
  t.equal(fiftyFirst.result.statusCode, 200)
  t.ok(fiftyFirst.ms >= 500 - EARLY_MS, `51st waited ${Math.round(fiftyFirst.ms)} ms`)
  const fiftySecond = await timed(() => get(app, '/api/no-such-route'))
  t.equal(fiftySecond.result.statusCode, 404, 'unknown routes are slowed too')
  t.ok(fiftySecond.ms >= 1000 - EARLY_MS, `52nd waited ${Math.round(fiftySecond.ms)} ms`)
})

t.test('configured values: the delay grows and stops at SLOW_DOWN_MAX_DELAY_MS; other clients are not held up', async (t) => {
  // Uncapped, the 4th request would wait 2000 ms: the cap (1200) is far from both.
  const app = await buildTestApp(t, { SLOW_DOWN_AFTER: 2, SLOW_DOWN_DELAY_MS: 1000, SLOW_DOWN_MAX_DELAY_MS: 1200 })
  await get(app, '/')
  await get(app, '/')

  const completed: string[] = []
  const slowed = timed(() => get(app, '/')).then((outcome) => { completed.push('slowed'); return outcome })
  const other = await timed(() => get(app, '/', '203.0.113.2'))
  completed.push('other client')
  t.equal(other.result.statusCode, 200)
  t.ok(other.ms < 1000 - EARLY_MS, `another client is served while the first one waits (${Math.round(other.ms)} ms: a timer, not a blocked loop)`)

  const third = await slowed
  t.same(completed, ['other client', 'slowed'])
  t.equal(third.result.statusCode, 200)
  t.ok(third.ms >= 1000 - EARLY_MS, `3rd waited ${Math.round(third.ms)} ms`)

  const fourth = await timed(() => get(app, '/'))
  t.equal(fourth.result.statusCode, 200)
  t.ok(fourth.ms >= 1200 - EARLY_MS && fourth.ms < 2000 - EARLY_MS, `4th waited ${Math.round(fourth.ms)} ms: capped at 1200, not 2000`)
})

t.test('shutdown lets delayed requests proceed instead of holding the drain', async (t) => {
  const app = await buildTestApp(t, { SLOW_DOWN_AFTER: 1, SLOW_DOWN_DELAY_MS: 5000, SLOW_DOWN_MAX_DELAY_MS: 5000 })
  await get(app, '/')
  const delayed = timed(() => get(app, '/'))
  await sleep(200) // for the request to reach its 5 s delay
  await app.close()
  const { result, ms } = await delayed
  t.equal(result.statusCode, 200)
  t.ok(ms < 2500, `answered ${Math.round(ms)} ms after it arrived, not after 5000`)
})

t.test('an unreachable Redis lets requests through at once (fail open), limits and delays alike', async (t) => {
  // Nothing listens on this port: every counter command fails at once.
  const app = await buildTestApp(t, {
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`, RATE_LIMIT_MAX: 1, AI_RATE_LIMIT_MAX: 1, SLOW_DOWN_AFTER: 0, SLOW_DOWN_DELAY_MS: 5000, SLOW_DOWN_MAX_DELAY_MS: 5000
  }, (app) => {
    app.get('/api/thing', async () => ({ ok: true }))
    app.get('/api/ai-companion/thing', { config: { aiRateLimit: true } }, async () => ({ ok: true }))
  })

  const { result: responses, ms } = await timed(() => Promise.all([
    get(app, '/api/thing'), get(app, '/api/thing'), get(app, '/api/thing'),
    get(app, '/api/ai-companion/thing'), get(app, '/api/ai-companion/thing'),
    get(app, '/api/no-such-route')
  ]))
  t.same(responses.map((response) => response.statusCode), [200, 200, 200, 200, 200, 404], 'nothing refused, no 500')
  t.ok(ms < 2000, `nothing delayed, nothing waits for Redis (${Math.round(ms)} ms for all)`)
  t.same(responses[0]?.json(), { ok: true })
})
