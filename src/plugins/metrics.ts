import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import type { Config } from '../config.js'
import { toErrorBody } from '../errors.js'
import type { Stats } from '../schemas/monitoring.js'
import type { Alert, AlertChange } from '../services/monitoring/alerts.js'
import { createMetricsService, toMB, uptime, type MetricsService, type Thresholds } from '../services/monitoring/metrics.js'
import { createResourceSampler } from '../services/monitoring/sampler.js'

declare module 'fastify' {
  interface FastifyInstance { metrics: MetricsService }
  interface FastifyContextConfig {
    /** false: not counted in request metrics (probes and scrapes are not user traffic). */
    metrics?: boolean
  }
}

/*
 * Rules the SPEC leaves to us (no environment variable): a rate alert needs
 * ten requests in its window, and every rule is re-evaluated at least this
 * often even when no request and no probe arrives.
 */
const MIN_RATE_SAMPLE = 10
const MAX_EVALUATE_INTERVAL_MS = 10_000
const SAMPLE_INTERVAL_MS = 1000

function thresholdsFrom (config: Config): Thresholds {
  return {
    memoryWarnMB: config.MEMORY_WARN_MB,
    memoryLimitMB: config.MEMORY_LIMIT_MB,
    errorRatePct: config.ERROR_RATE_ALERT_PCT,
    aiFailureRatePct: config.AI_FAILURE_ALERT_PCT,
    slowResponseMs: config.SLOW_RESPONSE_MS,
    highConnections: config.HIGH_CONNECTIONS,
    eventLoopStallMs: config.EVENT_LOOP_STALL_MS,
    minRateSample: MIN_RATE_SAMPLE,
    // A slow-response alert clears once a whole stats interval (5 min by
    // default, the same as the rate window) went by without a slow response.
    slowClearMs: config.STATS_INTERVAL_MS
  }
}

/**
 * Metrics, alerts, the periodic stats log (SPEC §8) and the dashboard's
 * history: one sample every STATS_SAMPLE_INTERVAL_MS (SPEC §8.1). The
 * resource sampler reads memory and event-loop delay once a second; it
 * answers nothing by itself: only /health and /health/ready report, so a
 * memory warning never becomes an outage of every route.
 *
 * Alerts are evaluated when something they depend on is recorded (a request:
 * error rate and slow response; an AI outcome; a connection opening or
 * closing), on every /health probe and /api/stats or /metrics read, and on a
 * timer (every STATS_INTERVAL_MS, at most 10 s apart) for what changes with
 * time alone: memory, the window sliding past old errors, a quiet slow alert.
 */
export default fp(async (app) => {
  const { STATS_INTERVAL_MS, STATS_SAMPLE_INTERVAL_MS } = app.config
  const sampler = createResourceSampler({
    intervalMs: SAMPLE_INTERVAL_MS,
    onError: (error) => app.log.warn({ err: error }, 'could not read the process memory (figures keep their last values)')
  })
  const resources = sampler.figures

  // Critical alerts (the ones that take the instance out of rotation) go to
  // errors.log, the others to the stdout log; one line per change.
  const onAlert = (change: AlertChange, alert: Readonly<Alert>) => {
    const line = { alert: { ...alert } }
    const message = `alert ${change}: ${alert.name}`
    if (alert.level === 'critical') {
      if (change === 'started') app.logFiles.errors.error(line, message)
      else app.logFiles.errors.info(line, message)
    } else if (change === 'started') {
      app.log.warn(line, message)
    } else {
      app.log.info(line, message)
    }
  }

  const metrics = createMetricsService({ thresholds: thresholdsFrom(app.config), resources, onAlert })
  app.decorate('metrics', metrics)

  // Callback-style hooks: no promise per request on the hot path.
  app.addHook('onResponse', (request, reply, done) => {
    if (request.routeOptions.config.metrics !== false) metrics.recordRequest(reply.statusCode, reply.elapsedTime)
    done()
  })

  app.addHook('onError', (request, _reply, error, done) => {
    const body = toErrorBody(error)
    if (body.statusCode >= 500 && request.routeOptions.config.metrics !== false) {
      // What the client was told, not the internal message: /api/stats may be public.
      metrics.recordServerError({
        message: body.error,
        code: body.code,
        route: request.routeOptions.url ?? null,
        statusCode: body.statusCode,
        reqId: request.id
      })
    }
    done()
  })

  // Timers start once every plugin the report reads (sessions, AI) exists.
  let evaluateTimer: NodeJS.Timeout | undefined
  let statsTimer: NodeJS.Timeout | undefined
  let historyTimer: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    evaluateTimer = setInterval(metrics.evaluate, Math.min(STATS_INTERVAL_MS, MAX_EVALUATE_INTERVAL_MS)).unref()
    statsTimer = setInterval(() => { logStats(app) }, STATS_INTERVAL_MS).unref()
    historyTimer = setInterval(() => { sampleHistory(app) }, STATS_SAMPLE_INTERVAL_MS).unref()
  })
  app.addHook('onClose', async () => {
    sampler.close()
    clearInterval(evaluateTimer)
    clearInterval(statsTimer)
    clearInterval(historyTimer)
  })
}, { name: 'metrics', dependencies: ['config', 'logging', 'errors'] })

/** The /api/stats body; also the server-stats.log snapshot. */
export async function statsReport (app: FastifyInstance): Promise<Static<typeof Stats>> {
  const { health, ...snapshot } = app.metrics.snapshot()
  const sessions = await app.sessionCounts()
  const ai = app.ai.status()
  // Fresh figures here (not the 1 s samples): this endpoint is not hot.
  const { rss, heapUsed, heapTotal } = process.memoryUsage()
  return {
    instanceId: app.instanceId,
    uptime: uptime(),
    requests: snapshot.requests,
    ai: { ...snapshot.ai, provider: ai.provider, model: ai.model, circuit: ai.circuit },
    connections: snapshot.connections,
    sessions: { active: sessions.companion + sessions.multiplayer, ...sessions },
    performance: {
      ...snapshot.performance,
      memory: { rssMB: toMB(rss), heapUsedMB: toMB(heapUsed), heapTotalMB: toMB(heapTotal) },
      eventLoopDelayMs: health.eventLoopDelayMs
    },
    errors: snapshot.errors,
    alerts: health.alerts,
    thresholds: app.metrics.thresholds
  }
}

/** One /api/stats/history sample; an unreadable session store leaves a gap, not a hole in the ring. */
async function sampleHistory (app: FastifyInstance): Promise<void> {
  let sessions: number | null = null
  try {
    const counts = await app.sessions.counts()
    sessions = counts.companion + counts.multiplayer
  } catch (error) {
    app.log.debug({ err: error }, 'session counts unavailable for the stats history')
  }
  app.metrics.recordSample(sessions)
}

async function logStats (app: FastifyInstance): Promise<void> {
  try {
    const report = await statsReport(app)
    app.logFiles['server-stats'].info(report, 'stats snapshot')
    const { requests, performance, connections, sessions, alerts } = report
    app.log.info({
      requests: requests.total,
      errorRate: requests.errorRate,
      p95Ms: performance.p95Ms,
      rssMB: performance.memory.rssMB,
      connections: connections.current,
      sessions: sessions.active,
      alerts: alerts.length
    }, `stats: ${requests.total} requests, ${requests.errorRate}% errors (last ${requests.window.seconds} s), p95 ${performance.p95Ms} ms, ` +
      `${connections.current} connections, ${sessions.active} sessions, rss ${performance.memory.rssMB} MB, ${alerts.length} alerts`)
  } catch (error) {
    app.log.warn({ err: error }, 'could not write the stats snapshot')
  }
}
