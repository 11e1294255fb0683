import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Errors } from '../errors.js'
import { statsReport } from '../plugins/metrics.js'
import { errorResponses } from '../schemas/common.js'
import { Stats, StatsHistory } from '../schemas/monitoring.js'
import { createPrometheusExporter } from '../services/monitoring/prometheus.js'

const BEARER = /^Bearer +(\S+) *$/i

/**
 * Compares a bearer token in constant time: both sides are hashed first, so
 * timingSafeEqual always gets equal lengths and not even the token's length leaks.
 */
function bearerCheck (token: string): (authorization: string | undefined) => boolean {
  const expected = createHash('sha256').update(token).digest()
  return (authorization) => {
    const given = BEARER.exec(authorization ?? '')?.[1]
    return given !== undefined && timingSafeEqual(createHash('sha256').update(given).digest(), expected)
  }
}

// Scrapes are not user traffic: they stay out of the request metrics.
// /metrics is never rate-limited, or a Prometheus scraping every 15 s would
// use most of the general budget. The /api/stats routes are part of /api/*
// and limited (SPEC §5) while they are open; with STATS_TOKEN a right token
// is never counted (SPEC §6: the dashboard reads every 2 s), wrong guesses are.
const scrapeConfig = { metrics: false, rateLimit: false as const }

/**
 * GET /api/stats and GET /metrics: the same figures as JSON and as Prometheus
 * text; GET /api/stats/history: the dashboard's last hour (SPEC §8.1).
 */
const stats: FastifyPluginAsyncTypebox = async (app) => {
  const { STATS_TOKEN } = app.config
  const exporter = createPrometheusExporter()
  const security = STATS_TOKEN === undefined ? undefined : [{ statsToken: [] }]
  const statsConfig = STATS_TOKEN === undefined ? { metrics: false } : scrapeConfig

  if (STATS_TOKEN === undefined && app.config.NODE_ENV === 'production') {
    // /metrics shows process_open_fds, connection counts and memory: a map for
    // whoever plans a flood. Loud, because nothing else will say so.
    app.log.warn('STATS_TOKEN is not set in production: /api/stats and /metrics are public, including process_open_fds, memory and connection counts. Set STATS_TOKEN.')
  }

  if (STATS_TOKEN !== undefined) {
    const authorized = bearerCheck(STATS_TOKEN)
    // Encapsulated: applies to this plugin's routes only, none of which is
    // limited itself with a token set. A failed guess is counted against the
    // general limit (SPEC §6), and refused with 429 once the budget is spent;
    // a right token never is.
    app.addHook('preHandler', (request, reply, done) => {
      if (authorized(request.headers.authorization)) return done()
      app.countRequest(request, reply, (refused) => {
        if (refused !== undefined) return done(refused)
        reply.header('www-authenticate', 'Bearer')
        done(new Errors.UNAUTHORIZED())
      })
    })
  }

  app.get('/api/stats', {
    config: statsConfig,
    schema: {
      summary: 'Detailed metrics: counts since start, rates over the last 5 minutes, alerts',
      security,
      response: { 200: Stats, ...errorResponses(401) }
    }
  }, async () => statsReport(app))

  app.get('/api/stats/history', {
    config: statsConfig,
    schema: {
      summary: 'The figures behind the dashboard, one sample per interval (10 s) over the last hour',
      security,
      response: { 200: StatsHistory, ...errorResponses(401) }
    }
  }, async () => ({ intervalMs: app.config.STATS_SAMPLE_INTERVAL_MS, samples: app.metrics.history() }))

  app.get('/metrics', {
    config: scrapeConfig,
    schema: {
      summary: 'The same figures in Prometheus text format, with the default Node.js process metrics',
      security,
      response: {
        200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: Type.String() } } },
        ...errorResponses(401)
      }
    }
  }, async (_request, reply) => {
    const text = await exporter.render(await statsReport(app))
    return reply.type(exporter.contentType).send(text)
  })
}

export default stats
