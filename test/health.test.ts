import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { VERSION } from '../src/version.js'
import { apiError, startFakeGemini } from './fake-gemini.js'
import { addBoomRoute, buildAppWithLog, buildTestApp, persona as companionConfig, readLog, startServer, until, waitForLogLine } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * GET /health, /health/live and /health/ready through the whole app: the
 * SPEC §8 shape, 503 only for what takes an instance out of rotation,
 * "degraded" but 200 for high error and AI failure rates.
 */

const healthyChecks = {
  highMemory: false,
  highErrorRate: false,
  highAIFailureRate: false,
  redis: 'unused',
  memoryLimit: false,
  eventLoopStalled: false,
  shuttingDown: false
}

t.test('a fresh instance is healthy, with the full shape', async (t) => {
  const { app, url } = await startServer(t)
  // A companion session and two live sockets, made as clients make them.
  t.equal((await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig } })).statusCode, 200)
  await TestClient.connect(t, url)
  await TestClient.connect(t, url)
  // On a loaded machine the first 1 s sample of the event loop can include
  // the first requests' module loading and compiling (a real stall of over a
  // second); a fresh instance must be healthy once a sample goes without it.
  await until(async () => (await app.inject('/health')).statusCode === 200, 15_000, 'a sample without the startup stall')

  const response = await app.inject('/health')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^application\/json/)
  const body = response.json()
  t.same(Object.keys(body), ['status', 'timestamp', 'version', 'instanceId', 'uptime', 'memory', 'activeSessions', 'activeConnections', 'ai', 'checks', 'alerts'])
  t.equal(body.instanceId, app.instanceId)
  t.match(body.instanceId, /^[0-9a-f-]{36}$/, 'random at boot')
  t.equal(body.status, 'healthy')
  t.ok(Math.abs(Date.parse(body.timestamp) - Date.now()) < 5000)
  t.equal(body.version, VERSION)
  t.same(Object.keys(body.uptime), ['seconds', 'minutes', 'hours', 'days'])
  t.equal(body.uptime.minutes, Math.floor(body.uptime.seconds / 60))
  t.ok(body.memory.rssMB > 0 && body.memory.heapUsedMB > 0)
  t.equal(body.activeSessions, 1)
  t.equal(body.activeConnections, 2)
  t.same(body.ai, { provider: 'offline', model: 'gemini-2.5-flash', circuit: 'closed' })
  t.same(body.checks, healthyChecks)
  t.same(body.alerts, [])

  t.same((await app.inject('/health/live')).json(), { status: 'ok' })
  t.same((await app.inject('/health/ready')).json(), { status: 'ready' })
  const stats = (await app.inject('/api/stats')).json()
  t.equal(stats.requests.total, 1, 'only the initialize: probes are not counted as traffic')
  t.equal(stats.instanceId, app.instanceId, '/api/stats shows the same instance id')
  t.not((await buildTestApp(t)).instanceId, app.instanceId, 'another instance, another id')
})

t.test('memory at the limit: 503 unhealthy on /health only, every other route still served', async (t) => {
  const { app, config } = await buildAppWithLog(t, { MEMORY_WARN_MB: 1, MEMORY_LIMIT_MB: 1 })
  for (let i = 0; i < 3; i++) {
    const response = await app.inject('/health')
    t.equal(response.statusCode, 503)
    const body = response.json()
    t.equal(body.status, 'unhealthy')
    t.same(body.checks, { ...healthyChecks, highMemory: true, memoryLimit: true })
    t.same(body.alerts.map((alert: Record<string, unknown>) => [alert.name, alert.level, alert.threshold]), [['highMemory', 'warning', 1], ['memoryLimit', 'critical', 1]])
    t.equal(body.alerts[1].value, body.memory.rssMB)
  }
  // No automatic 503 from under-pressure on other routes, and readiness is about draining and Redis.
  t.equal((await app.inject('/')).statusCode, 200)
  t.equal((await app.inject('/health/ready')).statusCode, 200)
  t.equal((await app.inject('/health/live')).statusCode, 200)
  t.equal((await app.inject('/api/stats')).statusCode, 200)

  // Logged once however many probes saw it: the critical one in errors.log.
  // Writes are asynchronous: wait for the line, then close the app (which
  // flushes every log) so a duplicate could not still be on its way.
  await waitForLogLine(config.LOG_DIR, 'errors', (line) => line.msg === 'alert started: memoryLimit')
  await app.close()
  const started = (await readLog(config.LOG_DIR, 'errors')).filter((line) => line.msg === 'alert started: memoryLimit')
  t.equal(started.length, 1)
  t.match(started[0], { level: 'error', alert: { name: 'memoryLimit', level: 'critical', threshold: 1 } })
})

/** Blocks this process's event loop (the app's too: it runs here) for `ms`, as a runaway handler would. */
function blockEventLoop (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* busy */ }
}

t.test('a real event-loop stall: /health 503 unhealthy, logged as critical, healthy again after', async (t) => {
  const { app, config } = await buildAppWithLog(t, { EVENT_LOOP_STALL_MS: 1000 })
  t.equal((await app.inject('/health')).statusCode, 200)
  // Each turn of the loop takes 1.3 s, over the 1 s stall threshold, so every
  // 1 s sample of the loop's delay sees a stall; the short timer between
  // blocks lets the sampling timers run.
  let stalled: Awaited<ReturnType<typeof app.inject>> | undefined
  const deadline = Date.now() + 20_000
  while (stalled === undefined && Date.now() < deadline) {
    blockEventLoop(1300)
    await sleep(1)
    const response = await app.inject('/health')
    if (response.statusCode === 503) stalled = response
  }
  t.ok(stalled, 'a 503 within 20 s of stalling')
  t.equal(stalled?.json().status, 'unhealthy')
  t.same(stalled?.json().checks, { ...healthyChecks, eventLoopStalled: true })
  t.match(stalled?.json().alerts, [{ name: 'eventLoopStalled', level: 'critical', threshold: 1000 }])
  t.equal((await app.inject('/health/live')).statusCode, 200, 'liveness: the process still answers')

  await until(async () => (await app.inject('/health')).statusCode === 200, 10_000, 'the instance to recover')
  t.match(await waitForLogLine(config.LOG_DIR, 'errors', (line) => line.msg === 'alert started: eventLoopStalled'),
    { level: 'error', alert: { name: 'eventLoopStalled', level: 'critical' } })
})

t.test('memory over the warning level only: degraded, 200', async (t) => {
  const app = await buildTestApp(t, { MEMORY_WARN_MB: 1 })
  const response = await app.inject('/health')
  t.equal(response.statusCode, 200)
  t.equal(response.json().status, 'degraded')
  t.same(response.json().checks, { ...healthyChecks, highMemory: true })
})

t.test('shutting down: /health and /health/ready 503, /health/live 200', async (t) => {
  const app = await buildTestApp(t)
  app.lifecycle.beginShutdown()
  const health = await app.inject('/health')
  t.equal(health.statusCode, 503)
  t.equal(health.json().status, 'unhealthy')
  t.same(health.json().checks, { ...healthyChecks, shuttingDown: true })
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { status: 'shutting-down' })
  t.equal((await app.inject('/health/live')).statusCode, 200)
})

t.test('a flood of 4xx is not an error rate: healthy, 200', async (t) => {
  // Unknown URLs are slowed down past SLOW_DOWN_AFTER (SPEC §5); not what this test is about.
  const app = await buildTestApp(t, { SLOW_DOWN_AFTER: 1000 })
  for (let i = 0; i < 60; i++) t.equal((await app.inject(`/no/such/route/${i}`)).statusCode, 404)
  const response = await app.inject('/health')
  t.equal(response.statusCode, 200)
  t.equal(response.json().status, 'healthy')
  t.same(response.json().checks, healthyChecks)
  const { requests } = (await app.inject('/api/stats')).json()
  t.same([requests.total, requests.clientErrors, requests.serverErrors, requests.errorRate], [60, 60, 0, 0])
})

t.test('a high 5xx rate: degraded but 200', async (t) => {
  const { app } = await buildAppWithLog(t, { LOG_LEVEL: 'silent' }, addBoomRoute)
  for (let i = 0; i < 10; i++) await app.inject('/')
  for (let i = 0; i < 3; i++) t.equal((await app.inject('/test/boom')).statusCode, 500)
  const response = await app.inject('/health')
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.equal(body.status, 'degraded')
  t.same(body.checks, { ...healthyChecks, highErrorRate: true })
  t.same(body.alerts.map((alert: Record<string, unknown>) => [alert.name, alert.level, alert.value, alert.threshold]), [['highErrorRate', 'warning', 23.08, 20]], '3 of 13')
})

t.test('AI failures over AI_FAILURE_ALERT_PCT (a Gemini outage through the real AI routes): degraded but 200, circuit open', async (t) => {
  const fake = await startFakeGemini(t)
  fake.setDefault(apiError(503))
  const app = await buildTestApp(t, {
    GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: fake.url, AI_MAX_ATTEMPTS: 1, AI_RETRY_BASE_MS: 0, AI_RATE_LIMIT_MAX: 100
  })
  for (let i = 0; i < 10; i++) {
    const response = await app.inject({ method: 'POST', url: '/api/ai-companion/initialize', payload: { companionConfig } })
    t.equal(response.statusCode, 503)
    t.equal(response.json().code, 'AI_UNAVAILABLE')
  }
  const response = await app.inject('/health')
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.equal(body.status, 'degraded')
  t.same(body.ai, { provider: 'gemini', model: 'gemini-2.5-flash', circuit: 'open' })
  t.same(body.checks, { ...healthyChecks, highAIFailureRate: true, highErrorRate: true }, 'the 503s are server errors too')
  const { ai } = (await app.inject('/api/stats')).json()
  t.match(ai, { total: 10, successful: 0, failures: 10, fallbacks: 10, blocked: 0, failureRate: 100, successRate: 0 })
})
