import { performance } from 'node:perf_hooks'
import t from 'tap'
import type { AiOutcome } from '../src/services/ai/outcome.js'
import { createHistoryRing, createMetricsService, createSampleRing, HISTORY_FIELDS, type HistorySample, type ResourceFigures } from '../src/services/monitoring/metrics.js'
import { buildTestApp, startServer, until } from './helper.js'

/*
 * The dashboard's history (SPEC §8.1): the ring on its own, the metrics
 * service closing intervals under a fake clock, and GET /api/stats/history
 * through the whole app with its real timer and STATS_TOKEN.
 */

const MB = 1024 * 1024
const START = Date.parse('2030-01-01T00:00:00.000Z')

const sample = (t: number, overrides: Partial<HistorySample> = {}): HistorySample => ({
  t,
  successful: 1,
  clientErrors: 0,
  serverErrors: 0,
  p50Ms: 1,
  p95Ms: 2,
  p99Ms: 3,
  aiRequests: 0,
  aiFailures: 0,
  aiFallbacks: 0,
  aiP95Ms: null,
  connections: 0,
  sessions: 0,
  rssMB: 100,
  heapUsedMB: 50,
  eventLoopDelayMs: 1,
  ...overrides
})

t.test('the ring keeps the last 360 samples, oldest first, nulls as nulls', async (t) => {
  const ring = createHistoryRing(360)
  t.same(ring.list(), [])
  for (let i = 1; i <= 361; i++) ring.push(sample(i, i === 361 ? { p50Ms: null, sessions: null } : {}))
  const samples = ring.list()
  t.equal(samples.length, 360)
  t.equal(samples[0].t, 2, 'the first sample was overwritten')
  t.equal(samples[359].t, 361)
  t.ok(samples.every((entry, i) => entry.t === i + 2), 'in order across the wrap')
  t.same(samples[359], sample(361, { p50Ms: null, sessions: null }), 'every figure round-trips')
  t.same(Object.keys(samples[0]), HISTORY_FIELDS, 'every field, in the documented order')
})

t.test('pushing costs the same whatever the ring size (O(1): no shifting, no growth)', async (t) => {
  const row = sample(0)
  // The fastest of several runs, so a busy machine's pauses do not decide.
  const fastest = (size: number) => {
    let best = Infinity
    for (let run = 0; run < 5; run++) {
      const ring = createHistoryRing(size)
      const started = performance.now()
      for (let i = 0; i < 200_000; i++) ring.push(row)
      best = Math.min(best, performance.now() - started)
    }
    return best
  }
  fastest(360) // warm-up
  const small = fastest(360)
  const large = fastest(36_000)
  // Shifting an array per push would make the 100× larger ring ~100× slower.
  t.ok(large < small * 5, `200k pushes: ${small.toFixed(1)} ms into 360 rows, ${large.toFixed(1)} ms into 36,000`)
})

t.test('percentiles of the newest n response times, across the ring\'s wrap', async (t) => {
  const ring = createSampleRing(5)
  for (let ms = 1; ms <= 7; ms++) ring.push(ms * 10) // holds 30..70, 60 and 70 at the start
  t.same(ring.summary(3), { sampleSize: 3, avg: 60, p50: 60, p95: 70, p99: 70 })
  t.same(ring.summary(1), { sampleSize: 1, avg: 70, p50: 70, p95: 70, p99: 70 })
  t.same(ring.summary(), { sampleSize: 5, avg: 50, p50: 50, p95: 70, p99: 70 })
  t.same(ring.summary(50), ring.summary(), 'no more than it holds')
})

const outcome = (result: AiOutcome['result'], latencyMs: number): AiOutcome =>
  ({ operation: 'chat', provider: 'gemini', model: 'gemini-2.5-flash', streamed: false, result, success: result === 'ok' || result === 'blocked', attempts: 1, latencyMs })

t.test('each sample covers its own interval: counts by outcome, percentiles of its requests, figures at its end', async (t) => {
  let clock = START
  const resources: ResourceFigures = { rssBytes: 100 * MB, heapUsedBytes: 50 * MB, eventLoopDelayMs: 2.345, eventLoopLongestDelayMs: 4 }
  const metrics = createMetricsService({
    thresholds: { memoryWarnMB: 800, memoryLimitMB: 1024, errorRatePct: 20, aiFailureRatePct: 50, slowResponseMs: 5000, highConnections: 100, eventLoopStallMs: 1000, minRateSample: 10, slowClearMs: 60_000 },
    resources: () => resources,
    onAlert: () => {},
    now: () => clock,
    historySize: 3
  })

  // Interval 1: 1..100 ms over 90 successes, 8 client errors, 2 server errors; AI calls.
  for (let ms = 1; ms <= 100; ms++) metrics.recordRequest(ms <= 90 ? 200 : ms <= 98 ? 404 : 500, ms)
  metrics.recordAi(outcome('ok', 100))
  metrics.recordAi(outcome('blocked', 300))
  metrics.recordAi(outcome('failed', 9000))
  metrics.recordAi(outcome('offline', 0))
  metrics.connectionOpened()
  clock += 10_000
  metrics.recordSample(4)

  // Interval 2: two slow requests only; the percentiles are theirs, not the last 1000.
  metrics.recordRequest(200, 1000)
  metrics.recordRequest(200, 3000)
  resources.rssBytes = 200 * MB
  clock += 10_000
  metrics.recordSample(null)

  // Interval 3: nothing happened.
  clock += 10_000
  metrics.recordSample(0)

  t.same(metrics.history(), [
    {
      t: START + 10_000,
      successful: 90,
      clientErrors: 8,
      serverErrors: 2,
      p50Ms: 50,
      p95Ms: 95,
      p99Ms: 99,
      aiRequests: 4,
      aiFailures: 1,
      aiFallbacks: 3,
      aiP95Ms: 300,
      connections: 1,
      sessions: 4,
      rssMB: 100,
      heapUsedMB: 50,
      eventLoopDelayMs: 2.35
    },
    { ...sample(START + 20_000), successful: 2, p50Ms: 1000, p95Ms: 3000, p99Ms: 3000, connections: 1, sessions: null, rssMB: 200, eventLoopDelayMs: 2.35 },
    { ...sample(START + 30_000), successful: 0, p50Ms: null, p95Ms: null, p99Ms: null, connections: 1, rssMB: 200, eventLoopDelayMs: 2.35 }
  ])

  clock += 10_000
  metrics.recordSample(0)
  t.same(metrics.history().map((entry) => entry.t), [START + 20_000, START + 30_000, START + 40_000], 'a ring of historySize')
  t.equal(metrics.snapshot().requests.total, 102, 'sampling leaves the totals alone')
})

t.test('GET /api/stats/history: samples from the real timer, documented in /docs', async (t) => {
  const { app, url } = await startServer(t, { STATS_SAMPLE_INTERVAL_MS: 100 })
  for (let i = 0; i < 3; i++) await (await fetch(url)).arrayBuffer()
  await (await fetch(`${url}/nope`)).arrayBuffer()
  await until(() => app.metrics.history().reduce((sum, entry) => sum + entry.successful + entry.clientErrors, 0) === 4, 5000, 'the requests sampled')

  const response = await fetch(`${url}/api/stats/history`)
  t.equal(response.status, 200)
  const body = await response.json() as { intervalMs: number, samples: HistorySample[] }
  t.same(Object.keys(body), ['intervalMs', 'samples'])
  t.equal(body.intervalMs, 100)
  t.ok(body.samples.length >= 1)
  const sum = (field: 'successful' | 'clientErrors' | 'serverErrors') => body.samples.reduce((total, entry) => total + entry[field], 0)
  t.same([sum('successful'), sum('clientErrors'), sum('serverErrors')], [3, 1, 0], 'the history reads are not counted')
  t.ok(body.samples.every((entry, i) => i === 0 || entry.t > body.samples[i - 1].t), 'oldest first')
  const busy = body.samples.find((entry) => entry.successful > 0)!
  t.ok(busy.p50Ms !== null && busy.p50Ms > 0)
  t.ok(busy.rssMB > 0 && busy.heapUsedMB > 0)
  t.equal(busy.sessions, 0)

  const docs = await (await fetch(`${url}/docs/json`)).json() as Record<string, any>
  const route = docs.paths['/api/stats/history'].get
  t.same(Object.keys(route.responses).sort(), ['200', '401'])
  const schema = route.responses['200'].content['application/json'].schema
  t.same(Object.keys(schema.properties), ['intervalMs', 'samples'])
  t.same(Object.keys(schema.properties.samples.items.properties), HISTORY_FIELDS)
  t.ok(docs.paths['/dashboard'].get, 'the page is listed too')
})

t.test('STATS_TOKEN protects the history like /api/stats; wrong guesses count against the rate limit, the right token never', async (t) => {
  const app = await buildTestApp(t, { STATS_TOKEN: 'h1story-token', RATE_LIMIT_MAX: 4, SLOW_DOWN_AFTER: 100 })
  const unauthorized = { error: 'A valid bearer token is required', code: 'UNAUTHORIZED', statusCode: 401 }
  for (const authorization of [undefined, 'Bearer wrong', 'h1story-token']) {
    const response = await app.inject({ url: '/api/stats/history', headers: authorization === undefined ? {} : { authorization } })
    t.equal(response.statusCode, 401, `with ${authorization}`)
    t.same(response.json(), unauthorized)
    t.equal(response.headers['www-authenticate'], 'Bearer')
  }
  const right = await app.inject({ url: '/api/stats/history', headers: { authorization: 'Bearer h1story-token' } })
  t.equal(right.statusCode, 200)
  t.same(Object.keys(right.json()), ['intervalMs', 'samples'])
  const fourth = await app.inject({ url: '/api/stats/history', headers: { authorization: 'Bearer guess-4' } })
  t.equal(fourth.statusCode, 401, 'the right token was not counted: the fourth guess is still within the limit')
  const guess = await app.inject({ url: '/api/stats/history', headers: { authorization: 'Bearer guess-5' } })
  t.equal(guess.statusCode, 429, 'the fifth guess within the window is refused')
  t.equal(guess.json().code, 'RATE_LIMITED')
  t.equal((await app.inject('/dashboard')).statusCode, 429, 'the page shares the general limit')
  const open = await buildTestApp(t, { RATE_LIMIT_MAX: 4 })
  t.equal((await open.inject('/dashboard')).statusCode, 200, 'the page itself needs no token')
})
