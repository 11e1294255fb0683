import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, Probe } from '../schemas/monitoring.js'
import { uptime } from '../services/monitoring/metrics.js'
import { isoTime } from '../services/iso-time.js'
import { VERSION } from '../version.js'

// Probes are never limited, are answered while draining (they report it), and
// are not user traffic, so they stay out of the request metrics.
const probeConfig = { duringShutdown: true, metrics: false, rateLimit: false as const }

/**
 * 503 only when this instance should leave the rotation (memory limit, stalled
 * event loop, draining, Redis down); high error or AI failure rates, or memory
 * over the warning level, make it "degraded" but keep it serving: a flood of
 * bad requests or a Gemini outage must not make the load balancer drop every
 * instance. Cheap per probe: sampled figures and a few comparisons.
 */
const health: FastifyPluginAsyncTypebox = async (app) => {
  const { lifecycle, metrics, redis } = app
  const redisCheck = () => redis === undefined ? 'unused' as const : redis.state

  app.get('/health', {
    config: probeConfig,
    schema: { summary: 'Health for humans and load balancers', response: { 200: Health, 503: Health } }
  }, async (_request, reply) => {
    const figures = metrics.evaluate()
    const counts = await app.sessionCounts()
    const shuttingDown = lifecycle.shuttingDown
    const redisState = redisCheck()
    const unhealthy = shuttingDown || figures.overMemoryLimit || figures.eventLoopStalled || redisState === 'down'
    const degraded = figures.highMemory || figures.highErrorRate || figures.highAIFailureRate
    reply.code(unhealthy ? 503 : 200)
    return {
      status: unhealthy ? 'unhealthy' as const : degraded ? 'degraded' as const : 'healthy' as const,
      timestamp: isoTime(Date.now()),
      version: VERSION,
      instanceId: app.instanceId,
      uptime: uptime(),
      memory: { rssMB: figures.rssMB, heapUsedMB: figures.heapUsedMB },
      activeSessions: counts.companion + counts.multiplayer,
      activeConnections: figures.connections,
      ai: app.ai.status(),
      checks: {
        highMemory: figures.highMemory,
        highErrorRate: figures.highErrorRate,
        highAIFailureRate: figures.highAIFailureRate,
        redis: redisState,
        memoryLimit: figures.overMemoryLimit,
        eventLoopStalled: figures.eventLoopStalled,
        shuttingDown
      },
      alerts: figures.alerts
    }
  })

  app.get('/health/live', {
    config: probeConfig,
    schema: { summary: 'Liveness: 200 while the process answers', response: { 200: Probe } }
  }, async () => ({ status: 'ok' }))

  app.get('/health/ready', {
    config: probeConfig,
    schema: { summary: 'Readiness: 503 while shutting down or while a configured Redis is unreachable', response: { 200: Probe, 503: Probe } }
  }, async (_request, reply) => {
    if (lifecycle.shuttingDown) return reply.code(503).send({ status: 'shutting-down' })
    if (redisCheck() === 'down') return reply.code(503).send({ status: 'redis-down' })
    return { status: 'ready' }
  })
}

export default health
