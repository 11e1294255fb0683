import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { App } from '../src/app.js'
import { aiEnv, apiError, startFakeGemini } from './fake-gemini.js'
import { addBoomRoute, buildAppWithLog, NO_LIMITS, persona, readLog, until } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * Alerts through the whole app, with thresholds set low: each one is logged
 * exactly once when it starts and once when it clears, never per request.
 * (Memory cannot be made to fall under 1 MB, so memory alerts clearing is
 * covered by test/metrics.test.ts with fake figures.)
 */

type Line = Record<string, any>

const alertLines = (lines: Line[], change: 'started' | 'cleared', name: string) =>
  lines.filter((line) => line.msg === `alert ${change}: ${name}`)

const addTestRoutes = (app: App) => {
  addBoomRoute(app)
  app.get('/test/slow', async () => {
    await sleep(400)
    return { ok: true }
  })
}

// Unknown and test routes count against the general limits; keep them out of the way.
const roomy = NO_LIMITS

t.test('error rate: one line when it starts, one when it clears', async (t) => {
  const { app, stdout } = await buildAppWithLog(t, roomy, addTestRoutes)
  for (let i = 0; i < 10; i++) await app.inject('/test/boom')
  const started = alertLines(stdout(), 'started', 'highErrorRate')
  t.equal(started.length, 1)
  t.match(started[0], { level: 'warn', alert: { name: 'highErrorRate', level: 'warning', value: 100, threshold: 20, since: String } })
  t.ok(Date.parse(started[0].alert.since) <= Date.now())

  for (let i = 0; i < 39; i++) await app.inject('/')
  t.same(alertLines(stdout(), 'cleared', 'highErrorRate'), [], '10 of 49 is still over 20 %')
  await app.inject('/')
  const cleared = alertLines(stdout(), 'cleared', 'highErrorRate')
  t.equal(cleared.length, 1, '10 of 50 is not over 20 %')
  t.match(cleared[0], { level: 'info', alert: { name: 'highErrorRate', value: 20, since: started[0].alert.since } })
  await app.inject('/health')
  t.equal(alertLines(stdout(), 'started', 'highErrorRate').length, 1)
  t.equal(alertLines(stdout(), 'cleared', 'highErrorRate').length, 1)
  t.same((await app.inject('/api/stats')).json().alerts, [])
})

t.test('AI failure rate, from real AI requests: one line when it starts, however many fail after', async (t) => {
  const fake = await startFakeGemini(t)
  fake.setDefault(apiError(400))
  const { app, stdout } = await buildAppWithLog(t, aiEnv(fake, { AI_MAX_ATTEMPTS: 1 }))
  const fail = async () => t.equal((await app.inject({ method: 'POST', url: '/api/ai-companion/chat', payload: { message: 'hi', companionConfig: persona } })).statusCode, 503)
  for (let i = 0; i < 9; i++) await fail()
  t.same(alertLines(stdout(), 'started', 'highAIFailureRate'), [], 'not before the minimum sample of 10')
  await fail()
  t.equal(alertLines(stdout(), 'started', 'highAIFailureRate').length, 1)
  t.match((await app.inject('/api/stats')).json().alerts, [{ name: 'highAIFailureRate', level: 'warning', value: 100, threshold: 50 }])
  for (let i = 0; i < 5; i++) await fail()
  t.equal(alertLines(stdout(), 'started', 'highAIFailureRate').length, 1, 'once, not per failure')
  // Clearing once the rate falls is covered with a fake clock in test/metrics.test.ts.
})

t.test('slow response: starts on the first slow one, clears after a quiet stats interval', async (t) => {
  const quietMs = 1000
  // Well apart (300 ms threshold, 400 ms route), so a fast request on a loaded machine is not
  // slow; the quiet interval is longer than a slow request, so the next one comes before it ends.
  const { app, stdout } = await buildAppWithLog(t, { ...roomy, SLOW_RESPONSE_MS: 300, STATS_INTERVAL_MS: quietMs }, addTestRoutes)
  for (let i = 0; i < 3; i++) t.equal((await app.inject('/test/slow')).statusCode, 200)
  const started = alertLines(stdout(), 'started', 'slowResponse')
  t.equal(started.length, 1)
  t.match(started[0], { level: 'warn', alert: { name: 'slowResponse', level: 'warning', threshold: 300 } })
  t.ok(started[0].alert.value > 300)
  t.equal(stdout().filter((line) => line.msg === 'slow response').length, 3, 'the per-request warning is the logging plugin\'s, separate')

  await app.inject('/')
  await until(() => alertLines(stdout(), 'cleared', 'slowResponse').length > 0)
  const cleared = alertLines(stdout(), 'cleared', 'slowResponse')
  t.equal(cleared.length, 1)
  // Measured between the log lines, not against the test's own pace: however
  // long the machine stalls, the alert must not clear earlier than this.
  const lastSlow = stdout().filter((line) => line.msg === 'slow response').at(-1) as Line
  const quietFor = Date.parse(cleared[0].time) - Date.parse(lastSlow.time)
  t.ok(quietFor >= quietMs, `cleared ${quietFor} ms after the last slow response (the fast one did not clear it), not before ${quietMs}`)
  t.same((await app.inject('/api/stats')).json().alerts, [])
  t.equal(alertLines(stdout(), 'started', 'slowResponse').length, 1)
})

t.test('connections: real WebSocket clients, one line each way', async (t) => {
  const { app, stdout } = await buildAppWithLog(t, { HIGH_CONNECTIONS: 1 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const first = await TestClient.connect(t, url)
  t.same(alertLines(stdout(), 'started', 'highConnections'), [], 'at the threshold is not over it')
  const others = [await TestClient.connect(t, url), await TestClient.connect(t, url)]
  t.equal(alertLines(stdout(), 'started', 'highConnections').length, 1)
  t.match((await app.inject('/health')).json(), { status: 'healthy', activeConnections: 3, alerts: [{ name: 'highConnections', value: 3, threshold: 1 }] })

  for (const client of others) client.ws.close()
  await until(() => alertLines(stdout(), 'cleared', 'highConnections').length > 0)
  t.match(alertLines(stdout(), 'cleared', 'highConnections'), [{ level: 'info', alert: { value: 1 } }])
  t.same((await app.inject('/api/stats')).json().connections, { current: 1, peak: 3 })
  first.ws.close()
  await until(() => app.metrics.evaluate().connections === 0)
  t.equal(alertLines(stdout(), 'started', 'highConnections').length, 1)
  t.equal(alertLines(stdout(), 'cleared', 'highConnections').length, 1)
})

t.test('memory warning: found by the periodic evaluation without any probe, logged once on stdout', async (t) => {
  const { app, config, stdout } = await buildAppWithLog(t, { MEMORY_WARN_MB: 1, STATS_INTERVAL_MS: 100 })
  await until(() => alertLines(stdout(), 'started', 'highMemory').length > 0)
  // Each stats summary evaluates the rules again: wait for three more.
  const summaries = () => stdout().filter((line) => String(line.msg).startsWith('stats:')).length
  const seen = summaries()
  await until(() => summaries() >= seen + 3)
  const started = alertLines(stdout(), 'started', 'highMemory')
  t.equal(started.length, 1)
  t.match(started[0], { level: 'warn', alert: { name: 'highMemory', level: 'warning', threshold: 1 } })
  await app.close() // flushes errors.log, so an absent line is really absent
  t.same((await readLog(config.LOG_DIR, 'errors')).filter((line) => String(line.msg).startsWith('alert')), [], 'warnings stay out of errors.log')
})
