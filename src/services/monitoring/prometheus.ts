import type { Static } from '@sinclair/typebox'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import type { Stats } from '../../schemas/monitoring.js'

/*
 * The /api/stats figures in Prometheus text format, plus the default Node.js
 * process metrics. Each app has its own Registry (never prom-client's global
 * one), so several apps in one process do not collide. The figures are set
 * from one stats report per scrape rather than by per-metric collect
 * callbacks, so a scrape takes one consistent snapshot.
 * @see https://github.com/siimon/prom-client
 */

type StatsReport = Static<typeof Stats>

const PREFIX = 'loverscode_'

export function createPrometheusExporter () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const registers = [registry]

  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name: PREFIX + name, help, labelNames, registers })
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name: PREFIX + name, help, labelNames, registers })

  const requests = counter('http_requests_total', 'HTTP requests since start by outcome (probes and scrapes excluded)', ['outcome'])
  const responseTime = gauge('http_response_time_milliseconds', 'Response time over the last 1000 requests', ['stat'])
  const errorRate = gauge('http_error_rate_percent', 'Share of 5xx responses over the last 5 minutes')
  const aiRequests = counter('ai_requests_total', 'AI requests since start')
  const aiSuccessful = counter('ai_successful_total', 'AI requests the model answered')
  const aiFailures = counter('ai_failures_total', 'AI requests that ended in 503 AI_UNAVAILABLE')
  const aiFallbacks = counter('ai_fallbacks_total', 'AI requests answered with a fallback (failed, blocked or offline)')
  const aiBlocked = counter('ai_blocked_total', 'AI replies blocked by safety filters or empty')
  const aiFailureRate = gauge('ai_failure_rate_percent', 'Share of failed AI requests over the last 5 minutes')
  const aiLatency = gauge('ai_latency_milliseconds', 'Latency of the last 1000 model answers', ['stat'])
  const aiCircuit = gauge('ai_circuit_state', '1 for the circuit breaker state in force', ['state'])
  const aiInfo = gauge('ai_info', 'The AI provider and model in use', ['provider', 'model'])
  const connections = gauge('connections', 'Open WebSocket connections')
  const peakConnections = gauge('connections_peak', 'Most WebSocket connections open at once since start')
  const sessions = gauge('sessions', 'Live sessions by kind', ['kind'])
  const eventLoopDelay = gauge('event_loop_delay_milliseconds', 'Mean event-loop delay over the last second')
  const alerts = gauge('alert_active', '1 for each alert in force', ['name', 'level'])

  // A counter can only grow; these mirror totals kept elsewhere, so set them.
  const setCounter = (metric: Counter, value: number, labels?: Record<string, string>) => {
    if (labels === undefined) {
      metric.reset()
      metric.inc(value)
    } else {
      metric.remove(labels)
      metric.inc(labels, value)
    }
  }

  function update (report: StatsReport): void {
    setCounter(requests, report.requests.successful, { outcome: 'successful' })
    setCounter(requests, report.requests.clientErrors, { outcome: 'client_error' })
    setCounter(requests, report.requests.serverErrors, { outcome: 'server_error' })
    const { performance: perf, ai } = report
    responseTime.set({ stat: 'avg' }, perf.avgResponseTimeMs)
    responseTime.set({ stat: 'p50' }, perf.p50Ms)
    responseTime.set({ stat: 'p95' }, perf.p95Ms)
    responseTime.set({ stat: 'p99' }, perf.p99Ms)
    errorRate.set(report.requests.errorRate)

    setCounter(aiRequests, ai.total)
    setCounter(aiSuccessful, ai.successful)
    setCounter(aiFailures, ai.failures)
    setCounter(aiFallbacks, ai.fallbacks)
    setCounter(aiBlocked, ai.blocked)
    aiFailureRate.set(ai.failureRate)
    aiLatency.set({ stat: 'avg' }, ai.avgLatencyMs)
    aiLatency.set({ stat: 'p95' }, ai.p95LatencyMs)
    for (const state of ['closed', 'open', 'half-open']) aiCircuit.set({ state }, ai.circuit === state ? 1 : 0)
    aiInfo.reset()
    aiInfo.set({ provider: ai.provider, model: ai.model }, 1)

    connections.set(report.connections.current)
    peakConnections.set(report.connections.peak)
    sessions.set({ kind: 'companion' }, report.sessions.companion)
    sessions.set({ kind: 'multiplayer' }, report.sessions.multiplayer)
    eventLoopDelay.set(perf.eventLoopDelayMs)
    alerts.reset()
    for (const alert of report.alerts) alerts.set({ name: alert.name, level: alert.level }, 1)
  }

  return {
    contentType: registry.contentType,
    /** The exposition text for one stats report. */
    async render (report: StatsReport): Promise<string> {
      update(report)
      return registry.metrics()
    }
  }
}

export type PrometheusExporter = ReturnType<typeof createPrometheusExporter>
