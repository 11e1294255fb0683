import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { App } from '../src/app.js'
import { aiEnv, apiError, startFakeGemini } from './fake-gemini.js'
import { addBoomRoute, buildAppWithLog, buildTestApp, persona, readLog, startServerWithLog, until, waitForLogLine } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * GET /api/stats, GET /metrics, STATS_TOKEN and the periodic stats log,
 * through the whole app. A test-only route that throws gives an honest 500.
 */

const addTestRoutes = (app: App) => {
  addBoomRoute(app)
  app.get('/test/ok', async () => ({ ok: true }))
}

/** Nearest-rank percentile, the definition /api/stats uses. */
const percentile = (sorted: number[], p: number) => sorted[Math.ceil((p * sorted.length) / 100) - 1]

/** Traffic the figures count: not the probes and scrapes. */
const counted = (line: Record<string, any>) => line.route !== null ? !/^\/(health|metrics|api\/stats)/.test(line.route) : true

/** The response times requests.log recorded for counted traffic, sorted, once `count` of them are written. */
async function loggedTimes (logDir: string, count: number): Promise<number[]> {
  const deadline = Date.now() + 5000
  for (;;) {
    const logged = (await readLog(logDir, 'requests')).filter(counted)
    if (logged.length >= count || Date.now() > deadline) return logged.map((line) => line.responseTimeMs as number).sort((a, b) => a - b)
    await sleep(20)
  }
}

t.test('GET /api/stats after a known sequence of requests: exact counts, rates and percentiles', async (t) => {
  const fake = await startFakeGemini(t)
  const { app, config, url } = await startServerWithLog(t, aiEnv(fake, { LOG_LEVEL: 'silent', AI_MAX_ATTEMPTS: 1 }), addTestRoutes)

  for (let i = 0; i < 3; i++) t.equal((await app.inject('/test/ok')).statusCode, 200)
  t.equal((await app.inject('/')).statusCode, 200)
  t.equal((await app.inject('/nope')).statusCode, 404)
  t.equal((await app.inject('/api/nope')).statusCode, 404)
  const boom = await app.inject('/test/boom')
  t.equal(boom.statusCode, 500)
  // Probes and scrapes are not user traffic: not counted.
  t.equal((await app.inject('/health')).statusCode, 200)
  t.equal((await app.inject('/health/live')).statusCode, 200)
  t.equal((await app.inject('/metrics')).statusCode, 200)

  // Real AI requests against the fake: answered twice, blocked, failed.
  fake.script({ text: 'Hi, I am Ava.', delayMs: 30 }, { text: 'Tell me more.' }, { blockReason: 'SAFETY' }, apiError(400))
  const ai = (payload: object) => app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload })
  const { sessionId } = (await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig: persona } })).json()
  t.same([(await ai({ sessionId, message: 'hi' })).statusCode, (await ai({ sessionId, message: 'hm' })).statusCode, (await ai({ sessionId, message: 'so' })).statusCode],
    [200, 200, 503])
  // Real sockets: two connect, one leaves.
  const [stays, leaves] = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  leaves.ws.close()
  await until(async () => (await app.inject('/api/stats')).json().connections.current === 1, 5000, 'the server to see the close')
  t.equal(stays.ws.readyState, stays.ws.OPEN)
  // Latency figures cover the model's answers (ok and blocked): as ai-requests.log recorded them.
  const answered = (await readLog(config.LOG_DIR, 'ai-requests')).filter((line) => line.result === 'ok' || line.result === 'blocked')
  const latencies = answered.map((line) => line.latencyMs as number).sort((a, b) => a - b)
  t.equal(latencies.length, 3)

  const response = await app.inject('/api/stats')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^application\/json/)
  const stats = response.json()
  t.same(Object.keys(stats), ['instanceId', 'uptime', 'requests', 'ai', 'connections', 'sessions', 'performance', 'errors', 'alerts', 'thresholds'])
  t.same(stats.requests, {
    total: 11,
    successful: 7,
    clientErrors: 2,
    serverErrors: 2,
    successRate: 63.64,
    errorRate: 18.18,
    window: { seconds: 300, total: 11, successful: 7, clientErrors: 2, serverErrors: 2 }
  })
  const { avgLatencyMs, ...aiFigures } = stats.ai
  t.same(aiFigures, {
    total: 4,
    successful: 2,
    failures: 1,
    fallbacks: 2,
    blocked: 1,
    successRate: 50,
    failureRate: 25,
    p95LatencyMs: latencies[2],
    provider: 'gemini',
    model: 'gemini-2.5-flash',
    circuit: 'closed',
    window: { seconds: 300, total: 4, successful: 2, failures: 1, fallbacks: 2, blocked: 1 }
  })
  t.ok(Math.abs(avgLatencyMs - latencies.reduce((a, b) => a + b, 0) / 3) <= 0.01, `avg ${avgLatencyMs} of ${latencies.join(', ')}`)
  t.same(stats.connections, { current: 1, peak: 2 })
  t.same(stats.sessions, { active: 1, companion: 1, multiplayer: 0 })
  // A loaded machine can really stall this process's event loop; that alert is not this test's subject.
  t.same(stats.alerts.filter((alert: { name: string }) => alert.name !== 'eventLoopStalled'), [], 'under every threshold (rates need 10 requests)')
  t.same(stats.thresholds, {
    memoryWarnMB: 800,
    memoryLimitMB: 1024,
    errorRatePct: 20,
    aiFailureRatePct: 50,
    slowResponseMs: 5000,
    highConnections: 100,
    eventLoopStallMs: 60_000, // from config: the test helper sets 60 s (see testConfig)
    minRateSample: 10,
    slowClearMs: 300000
  })
  t.same(Object.keys(stats.uptime), ['seconds', 'minutes', 'hours', 'days'])
  t.ok(Object.values(stats.uptime).every(Number.isInteger))

  // errors.recent: what the client was told, no stack, and the reqId that finds the full line in errors.log.
  const boomLine = await waitForLogLine(config.LOG_DIR, 'errors', (line) => line.msg === 'request failed' && line.route === '/test/boom')
  const aiLine = await waitForLogLine(config.LOG_DIR, 'errors', (line) => line.msg === 'request failed' && line.code === 'AI_UNAVAILABLE')
  t.same(stats.errors, {
    count: 2,
    recent: [{
      timestamp: stats.errors.recent[0].timestamp,
      message: 'The AI companion is temporarily unavailable',
      code: 'AI_UNAVAILABLE',
      route: '/api/ai-companion/chat',
      statusCode: 503,
      reqId: aiLine.reqId
    }, {
      timestamp: stats.errors.recent[1].timestamp,
      message: 'Internal server error',
      code: 'INTERNAL_ERROR',
      route: '/test/boom',
      statusCode: 500,
      reqId: boomLine.reqId
    }]
  })
  t.ok(Date.parse(stats.errors.recent[0].timestamp) > Date.now() - 60_000)
  t.notMatch(response.body, /secret internal detail|srv\/app|stack/)

  // The percentiles are exactly the nearest ranks of the 11 response times requests.log recorded.
  const { performance } = stats
  const times = await loggedTimes(config.LOG_DIR, 11)
  t.equal(times.length, 11)
  t.equal(performance.sampleSize, 11)
  t.equal(performance.p50Ms, percentile(times, 50))
  t.equal(performance.p95Ms, percentile(times, 95))
  t.equal(performance.p99Ms, percentile(times, 99))
  t.ok(Math.abs(performance.avgResponseTimeMs - times.reduce((a, b) => a + b, 0) / 11) <= 0.01)
  t.ok(performance.memory.rssMB > 0 && performance.memory.heapUsedMB > 0 && performance.memory.heapTotalMB >= performance.memory.heapUsedMB)
  t.type(performance.eventLoopDelayMs, 'number')
})

t.test('AI figures from the real AI routes against the fake Gemini', async (t) => {
  const fake = await startFakeGemini(t)
  fake.script({ text: 'Hi, I am Ava. What is your name?', delayMs: 30 }, { blockReason: 'SAFETY' }, apiError(400))
  const app = await buildTestApp(t, { GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: fake.url, AI_MAX_ATTEMPTS: 1 })
  const statuses = []
  for (let i = 0; i < 3; i++) {
    statuses.push((await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig: persona } })).statusCode)
  }
  t.same(statuses, [200, 200, 503], 'answered, blocked (a deflection), failed')
  const { ai, requests } = (await app.inject('/api/stats')).json()
  t.match(ai, {
    total: 3,
    successful: 1,
    failures: 1,
    fallbacks: 2,
    blocked: 1,
    successRate: 33.33,
    failureRate: 33.33,
    provider: 'gemini',
    model: 'gemini-2.5-flash',
    circuit: 'closed'
  })
  t.ok(ai.p95LatencyMs >= 30, 'the slowest model answer includes the 30 ms upstream delay')
  t.ok(ai.avgLatencyMs > 0 && ai.avgLatencyMs <= ai.p95LatencyMs)
  t.same([requests.total, requests.successful, requests.serverErrors], [3, 2, 1])
})

t.test('GET /metrics: Prometheus text with the request counter and the default process metrics', async (t) => {
  const fake = await startFakeGemini(t)
  const { app, config, url } = await startServerWithLog(t, aiEnv(fake, { LOG_LEVEL: 'silent', AI_MAX_ATTEMPTS: 1 }), addTestRoutes)
  await app.inject('/test/ok')
  await app.inject('/test/ok')
  await app.inject('/nope')
  await app.inject('/test/boom')
  fake.script(apiError(400))
  const failed = await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { message: 'hi', companionConfig: persona } })
  t.equal(failed.statusCode, 503)
  await TestClient.connect(t, url)

  const response = await app.inject('/metrics')
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  const lines = response.body.split('\n').filter(Boolean)
  // Prometheus parses values with Go's ParseFloat: NaN and Inf in any case (prom-client writes "Nan").
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (-?[0-9.e+-]+|nan|[+-]inf)$/i
  const bad = lines.filter((line) => !line.startsWith('# HELP ') && !line.startsWith('# TYPE ') && !sample.test(line))
  t.same(bad, [], 'every line is a comment or a sample')

  const value = (name: string) => lines.find((line) => line.startsWith(name + ' '))?.slice(name.length + 1)
  t.ok(lines.includes('# TYPE loverscode_http_requests_total counter'))
  t.equal(value('loverscode_http_requests_total{outcome="successful"}'), '2')
  t.equal(value('loverscode_http_requests_total{outcome="client_error"}'), '1')
  t.equal(value('loverscode_http_requests_total{outcome="server_error"}'), '2')
  t.equal(value('loverscode_ai_requests_total'), '1')
  t.equal(value('loverscode_ai_failures_total'), '1')
  t.equal(value('loverscode_ai_fallbacks_total'), '1')
  t.equal(value('loverscode_connections'), '1')
  t.equal(value('loverscode_sessions{kind="companion"}'), '1', 'the failed chat\'s session')
  t.equal(value('loverscode_ai_circuit_state{state="closed"}'), '1')
  t.equal(value('loverscode_ai_info{provider="gemini",model="gemini-2.5-flash"}'), '1')
  t.equal(value('loverscode_http_error_rate_percent'), '40')
  // The percentiles are the nearest ranks of the 5 response times requests.log recorded.
  const times = await loggedTimes(config.LOG_DIR, 5)
  t.equal(times.length, 5)
  t.same(['p50', 'p95', 'p99'].map((stat) => value(`loverscode_http_response_time_milliseconds{stat="${stat}"}`)),
    [String(times[2]), String(times[4]), String(times[4])])
  for (const name of ['process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'process_cpu_user_seconds_total']) {
    t.ok(lines.some((line) => line.startsWith(name + ' ') || line.startsWith(name + '{')), `default metric ${name}`)
  }

  // Counters mirror the totals on every scrape, without doubling.
  await app.inject('/test/ok')
  const again = (await app.inject('/metrics')).body
  t.match(again, /^loverscode_http_requests_total\{outcome="successful"\} 3$/m)
})

t.test('two apps in one process keep separate registries', async (t) => {
  const first = await buildTestApp(t)
  const second = await buildTestApp(t)
  await first.inject('/')
  t.match((await first.inject('/metrics')).body, /^loverscode_http_requests_total\{outcome="successful"\} 1$/m)
  t.match((await second.inject('/metrics')).body, /^loverscode_http_requests_total\{outcome="successful"\} 0$/m)
})

t.test('STATS_TOKEN protects /api/stats and /metrics', async (t) => {
  const app = await buildTestApp(t, { STATS_TOKEN: 's3cret-token' })
  const unauthorized = { error: 'A valid bearer token is required', code: 'UNAUTHORIZED', statusCode: 401 }
  for (const url of ['/api/stats', '/metrics']) {
    for (const authorization of [undefined, 'Bearer wrong', 'Bearer s3cret-toke', 'Bearer s3cret-token2', 's3cret-token', 'Basic czNjcmV0LXRva2Vu', 'Bearer ']) {
      const response = await app.inject({ url, headers: authorization === undefined ? {} : { authorization } })
      t.equal(response.statusCode, 401, `${url} with ${authorization}`)
      t.same(response.json(), unauthorized)
      t.equal(response.headers['www-authenticate'], 'Bearer')
    }
    t.equal((await app.inject({ url, headers: { authorization: 'Bearer s3cret-token' } })).statusCode, 200, `${url} with the token`)
    t.equal((await app.inject({ url, headers: { authorization: 'bearer s3cret-token' } })).statusCode, 200, 'the scheme is case-insensitive')
  }
  t.equal((await app.inject('/health')).statusCode, 200, 'probes need no token')
  t.equal((await app.inject('/')).statusCode, 200)
})

t.test('wrong STATS_TOKEN guesses count against the general limit on every stats route; the right token on /metrics never does', async (t) => {
  const app = await buildTestApp(t, { STATS_TOKEN: 's3cret-token', RATE_LIMIT_MAX: 3 })
  const guess = (url: string) => app.inject({ url, headers: { authorization: 'Bearer guess' } })
  const statuses = [await guess('/metrics'), await guess('/metrics'), await guess('/api/stats'), await guess('/metrics'), await guess('/metrics')]
    .map((response) => response.statusCode)
  t.same(statuses, [401, 401, 401, 429, 429], 'the fourth guess is refused, on /metrics as on /api/stats')
  const refused = await guess('/metrics')
  t.match(refused.json(), { code: 'RATE_LIMITED', statusCode: 429 })
  t.ok(Number(refused.headers['retry-after']) > 0)
  for (let i = 0; i < 10; i++) {
    for (const url of ['/metrics', '/api/stats', '/api/stats/history']) {
      const read = await app.inject({ url, headers: { authorization: 'Bearer s3cret-token' } })
      t.equal(read.statusCode, 200, `${url} read ${i + 1} with the token, after the budget is spent`)
    }
  }
})

t.test('without STATS_TOKEN the figures are open', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await app.inject('/api/stats')).statusCode, 200)
  t.equal((await app.inject('/metrics')).statusCode, 200)
})

const PUBLIC_METRICS = 'STATS_TOKEN is not set in production: /api/stats and /metrics are public, including process_open_fds, memory and connection counts. Set STATS_TOKEN.'

t.test('in production without STATS_TOKEN a warning at startup says the figures are public', async (t) => {
  const warnings = async (overrides: Record<string, string>) =>
    (await buildAppWithLog(t, overrides)).stdout().filter((line) => line.msg === PUBLIC_METRICS)
  t.match(await warnings({ NODE_ENV: 'production' }), [{ level: 'warn' }])
  t.same(await warnings({ NODE_ENV: 'production', STATS_TOKEN: 'token' }), [])
  t.same(await warnings({ NODE_ENV: 'development' }), [])
})

t.test('every STATS_INTERVAL_MS: a snapshot in server-stats.log and a summary on stdout', async (t) => {
  const { app, config, stdout } = await buildAppWithLog(t, { STATS_INTERVAL_MS: 100 })
  await app.inject('/')
  await app.inject('/nope')
  const line = await waitForLogLine(config.LOG_DIR, 'server-stats', (entry) => entry.msg === 'stats snapshot' && entry.requests.total === 2)
  t.equal(line.level, 'info')
  t.equal(line.log, 'server-stats')
  t.same(line.requests, {
    total: 2,
    successful: 1,
    clientErrors: 1,
    serverErrors: 0,
    successRate: 50,
    errorRate: 0,
    window: { seconds: 300, total: 2, successful: 1, clientErrors: 1, serverErrors: 0 }
  })
  t.same(Object.keys(line.uptime), ['seconds', 'minutes', 'hours', 'days'])
  t.ok(Object.values(line.uptime).every(Number.isInteger))
  t.same(line.ai, {
    total: 0,
    successful: 0,
    failures: 0,
    fallbacks: 0,
    blocked: 0,
    successRate: 100,
    failureRate: 0,
    avgLatencyMs: 0,
    p95LatencyMs: 0,
    provider: 'offline',
    model: 'gemini-2.5-flash',
    circuit: 'closed',
    window: { seconds: 300, total: 0, successful: 0, failures: 0, fallbacks: 0, blocked: 0 }
  })
  t.same(line.connections, { current: 0, peak: 0 })
  t.same(line.sessions, { active: 0, companion: 0, multiplayer: 0 })
  const times = await loggedTimes(config.LOG_DIR, 2)
  t.equal(times.length, 2)
  t.match(line.performance, { sampleSize: 2, p50Ms: times[0], p95Ms: times[1], p99Ms: times[1] })
  t.ok(Math.abs(line.performance.avgResponseTimeMs - (times[0] + times[1]) / 2) <= 0.01)
  t.ok(line.performance.memory.rssMB > 0 && line.performance.memory.heapUsedMB > 0)
  t.same(line.errors, { count: 0, recent: [] })
  t.same(line.alerts, [])
  t.same(line.thresholds, {
    memoryWarnMB: 800,
    memoryLimitMB: 1024,
    errorRatePct: 20,
    aiFailureRatePct: 50,
    slowResponseMs: 5000,
    highConnections: 100,
    eventLoopStallMs: 60_000, // from config: the test helper sets 60 s (see testConfig)
    minRateSample: 10,
    slowClearMs: 100
  })

  const summary = stdout().find((entry) => typeof entry.msg === 'string' && entry.msg.startsWith('stats: 2 requests'))
  t.ok(summary, 'a one-line summary on stdout')
  t.match(summary, {
    level: 'info',
    requests: 2,
    errorRate: 0,
    p95Ms: times[1],
    connections: 0,
    sessions: 0,
    alerts: 0
  })
  t.equal(summary?.msg, `stats: 2 requests, 0% errors (last 300 s), p95 ${times[1]} ms, 0 connections, 0 sessions, rss ${summary?.rssMB} MB, 0 alerts`)
  t.ok(summary?.rssMB > 0)

  // The timer keeps going and stops with the app.
  await waitForLogLine(config.LOG_DIR, 'server-stats', (entry) => entry.msg === 'stats snapshot' && entry.time > line.time)
  await app.close()
  const count = stdout().filter((entry) => entry.msg?.startsWith('stats:')).length
  await sleep(300)
  t.equal(stdout().filter((entry) => entry.msg?.startsWith('stats:')).length, count, 'no tick after close')
})
