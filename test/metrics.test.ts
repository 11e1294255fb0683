import t from 'tap'
import type { AiOutcome } from '../src/services/ai/outcome.js'
import type { Alert, AlertChange } from '../src/services/monitoring/alerts.js'
import { createMetricsService, type ResourceFigures, type Thresholds } from '../src/services/monitoring/metrics.js'
import { aiOutcome } from './helper.js'

/*
 * The metrics service on its own: a fake clock and fake process figures, so
 * windows, percentiles and alert transitions are exact.
 */

const MB = 1024 * 1024
const START = Date.parse('2030-01-01T00:00:00.000Z')

const thresholds: Thresholds = {
  memoryWarnMB: 800,
  memoryLimitMB: 1024,
  errorRatePct: 20,
  aiFailureRatePct: 50,
  slowResponseMs: 5000,
  highConnections: 3,
  eventLoopStallMs: 1000,
  minRateSample: 10,
  slowClearMs: 60_000
}

function setup (overrides: Partial<Thresholds> = {}) {
  let clock = START
  const resources: ResourceFigures = { rssBytes: 100 * MB, heapUsedBytes: 50 * MB, eventLoopDelayMs: 2, eventLoopLongestDelayMs: 4 }
  const changes: Array<{ change: AlertChange, alert: Alert }> = []
  const metrics = createMetricsService({
    thresholds: { ...thresholds, ...overrides },
    resources: () => resources,
    onAlert: (change, alert) => changes.push({ change, alert: { ...alert } }),
    now: () => clock
  })
  return {
    metrics,
    resources,
    changes,
    advance: (ms: number) => { clock += ms },
    names: () => changes.map(({ change, alert }) => `${change} ${alert.name}`)
  }
}

const outcome = (result: AiOutcome['result'], latencyMs = 100) => aiOutcome(result, { latencyMs })

t.test('counts requests by outcome, with exact nearest-rank percentiles', async (t) => {
  const { metrics } = setup()
  // 1..100 ms: 90 successes (2xx and 3xx), 8 client errors, 2 server errors
  for (let ms = 1; ms <= 100; ms++) {
    const status = ms <= 85 ? 200 : ms <= 90 ? 304 : ms <= 98 ? 404 : 500
    metrics.recordRequest(status, ms)
  }
  const { requests, performance, errors } = metrics.snapshot()
  t.same(requests, {
    total: 100,
    successful: 90,
    clientErrors: 8,
    serverErrors: 2,
    successRate: 90,
    errorRate: 2,
    window: { seconds: 300, total: 100, successful: 90, clientErrors: 8, serverErrors: 2 }
  })
  t.same(performance, { avgResponseTimeMs: 50.5, p50Ms: 50, p95Ms: 95, p99Ms: 99, sampleSize: 100 })
  t.same(errors, { count: 2, recent: [] }, 'recent entries come from recordServerError only')
})

t.test('response times: a ring of the last 1000', async (t) => {
  const { metrics } = setup()
  for (let ms = 1; ms <= 1500; ms++) metrics.recordRequest(200, ms)
  t.same(metrics.snapshot().performance, { avgResponseTimeMs: 1000.5, p50Ms: 1000, p95Ms: 1450, p99Ms: 1490, sampleSize: 1000 })
  t.equal(metrics.snapshot().requests.total, 1500, 'the count is not bounded by the ring')
})

t.test('empty figures are zeros, and successRate is 100 without traffic', async (t) => {
  const { metrics } = setup()
  const { requests, ai, performance } = metrics.snapshot()
  t.same([requests.total, requests.successRate, requests.errorRate], [0, 100, 0])
  t.same([ai.total, ai.successRate, ai.failureRate, ai.avgLatencyMs, ai.p95LatencyMs], [0, 100, 0, 0, 0])
  t.same(performance, { avgResponseTimeMs: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, sampleSize: 0 })
})

t.test('rates cover the last 5 minutes; totals since start stay', async (t) => {
  const { metrics, advance } = setup()
  for (let i = 0; i < 10; i++) metrics.recordRequest(500, 1)
  advance(2 * 60_000)
  for (let i = 0; i < 10; i++) metrics.recordRequest(200, 1)
  let { requests } = metrics.snapshot()
  t.equal(requests.errorRate, 50)
  t.same(requests.window, { seconds: 300, total: 20, successful: 10, clientErrors: 0, serverErrors: 10 })

  advance(3 * 60_000 + 1) // the errors are now more than 5 minutes old
  requests = metrics.snapshot().requests
  t.equal(requests.errorRate, 0)
  t.same(requests.window, { seconds: 300, total: 10, successful: 10, clientErrors: 0, serverErrors: 0 })
  t.same([requests.total, requests.serverErrors], [20, 10])

  advance(60 * 60_000) // long idle: the whole window empties at once
  t.same(metrics.snapshot().requests.window, { seconds: 300, total: 0, successful: 0, clientErrors: 0, serverErrors: 0 })
})

t.test('error-rate alert: needs the minimum sample, starts once, clears once', async (t) => {
  const { metrics, advance, changes, names } = setup()
  for (let i = 0; i < 9; i++) metrics.recordRequest(503, 1)
  t.same(names(), [], '9 requests are below the minimum sample')
  metrics.recordRequest(404, 1) // a 4xx is not an error, but completes the sample: 90 %
  t.same(names(), ['started highErrorRate'])
  t.match(changes[0].alert, { name: 'highErrorRate', level: 'warning', value: 90, threshold: 20, since: new Date(START).toISOString() })
  for (let i = 0; i < 20; i++) metrics.recordRequest(500, 1)
  t.equal(changes.length, 1, 'not logged again while it lasts')
  t.equal(metrics.evaluate().alerts[0].value, 96.67, 'the value follows the rate')
  t.equal(metrics.evaluate().highErrorRate, true)

  advance(5 * 60_000)
  t.equal(metrics.evaluate().highErrorRate, false, 'the incident left the window')
  t.same(names(), ['started highErrorRate', 'cleared highErrorRate'])
  t.same(metrics.evaluate().alerts, [])
})

t.test('AI outcomes: failures, fallbacks, blocked, latency of model answers', async (t) => {
  const { metrics, names } = setup()
  metrics.recordAi(outcome('ok', 100))
  metrics.recordAi(outcome('ok', 300))
  metrics.recordAi(outcome('blocked', 200))
  metrics.recordAi(outcome('offline', 0))
  metrics.recordAi(outcome('failed', 20_000))
  const { ai } = metrics.snapshot()
  t.same(ai, {
    total: 5,
    successful: 2,
    failures: 1,
    fallbacks: 3,
    blocked: 1,
    successRate: 40,
    failureRate: 20,
    avgLatencyMs: 200,
    p95LatencyMs: 300,
    window: { seconds: 300, total: 5, successful: 2, failures: 1, fallbacks: 3, blocked: 1 }
  })
  t.same(names(), [])
  for (let i = 0; i < 5; i++) metrics.recordAi(outcome('failed'))
  t.same(names(), ['started highAIFailureRate'], '6 failed of 10 > 50 %')
  t.equal(metrics.evaluate().highAIFailureRate, true)
  for (let i = 0; i < 3; i++) metrics.recordAi(outcome('ok'))
  t.same(names(), ['started highAIFailureRate', 'cleared highAIFailureRate'], '6 of 13 ≤ 50 %')
})

t.test('connections: current, peak, and the high-connections alert', async (t) => {
  const { metrics, changes, names } = setup()
  for (let i = 0; i < 4; i++) metrics.connectionOpened()
  t.same(names(), ['started highConnections'])
  t.match(changes[0].alert, { value: 4, threshold: 3, level: 'warning' })
  metrics.connectionOpened()
  metrics.connectionClosed()
  metrics.connectionClosed()
  t.same(names(), ['started highConnections', 'cleared highConnections'])
  t.equal(changes[1].alert.value, 3, 'cleared with the figure that cleared it')
  for (let i = 0; i < 10; i++) metrics.connectionClosed()
  t.same(metrics.snapshot().connections, { current: 0, peak: 5 }, 'never below zero')
})

t.test('memory and event loop: warning and critical alerts from the sampled figures', async (t) => {
  const { metrics, resources, changes, names } = setup()
  t.match(metrics.evaluate(), { rssMB: 100, heapUsedMB: 50, highMemory: false, overMemoryLimit: false, eventLoopStalled: false })

  resources.rssBytes = 900 * MB
  t.match(metrics.evaluate(), { highMemory: true, overMemoryLimit: false })
  resources.rssBytes = 1024 * MB
  resources.eventLoopDelayMs = 700 // the mean may stay under the threshold: the longest delay decides
  resources.eventLoopLongestDelayMs = 1500
  t.match(metrics.evaluate(), { highMemory: true, overMemoryLimit: true, eventLoopStalled: true })
  metrics.evaluate()
  t.same(names(), ['started highMemory', 'started memoryLimit', 'started eventLoopStalled'])
  t.same(changes.map(({ alert }) => [alert.level, alert.threshold]), [['warning', 800], ['critical', 1024], ['critical', 1000]])
  t.same(metrics.evaluate().alerts.map((alert) => [alert.name, alert.value]), [['highMemory', 1024], ['memoryLimit', 1024], ['eventLoopStalled', 1500]])

  resources.rssBytes = 100 * MB
  resources.eventLoopDelayMs = 3
  resources.eventLoopLongestDelayMs = 5
  metrics.evaluate()
  t.same(names().slice(3), ['cleared highMemory', 'cleared memoryLimit', 'cleared eventLoopStalled'])
})

t.test('slow-response alert: starts on a slow response, clears after a quiet slowClearMs', async (t) => {
  const { metrics, advance, changes, names } = setup()
  metrics.recordRequest(200, 5000)
  t.same(names(), [], 'at the threshold is not over it')
  metrics.recordRequest(200, 6000)
  advance(30_000)
  metrics.recordRequest(200, 7000.123)
  metrics.recordRequest(200, 5500)
  t.same(names(), ['started slowResponse'])
  t.match(changes[0].alert, { value: 6000, threshold: 5000 })
  t.same(metrics.evaluate().alerts.map((alert) => alert.value), [7000.12], 'the slowest of the episode')
  advance(59_999)
  metrics.evaluate()
  t.same(names(), ['started slowResponse'], 'a slow response 59.999 s ago keeps it')
  advance(1)
  metrics.evaluate()
  t.same(names(), ['started slowResponse', 'cleared slowResponse'])

  metrics.recordRequest(200, 5001)
  t.equal(metrics.evaluate().alerts[0].value, 5001, 'a new episode starts from its own figure')
})

t.test('recent errors: the last 5, newest first', async (t) => {
  const { metrics, advance } = setup()
  for (let i = 1; i <= 7; i++) {
    metrics.recordServerError({ message: 'Internal server error', code: 'INTERNAL_ERROR', route: '/x', statusCode: 500, reqId: `r${i}` })
    advance(1000)
  }
  const { recent } = metrics.snapshot().errors
  t.same(recent.map((entry) => entry.reqId), ['r7', 'r6', 'r5', 'r4', 'r3'])
  t.same(recent[0], {
    timestamp: new Date(START + 6000).toISOString(),
    message: 'Internal server error',
    code: 'INTERNAL_ERROR',
    route: '/x',
    statusCode: 500,
    reqId: 'r7'
  })
})

t.test('a zero threshold alerts on the first error once the sample is there', async (t) => {
  const { metrics, names } = setup({ errorRatePct: 0, minRateSample: 1 })
  metrics.recordRequest(200, 1)
  t.same(names(), [])
  metrics.recordRequest(500, 1)
  t.same(names(), ['started highErrorRate'])
})
