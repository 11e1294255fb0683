import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Timestamp } from '../schemas/common.js'
import { VERSION } from '../version.js'

const MB = 1024 * 1024

const Health = Type.Object({
  status: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('unhealthy')]),
  timestamp: Timestamp,
  version: Type.String(),
  uptime: Type.Object({ seconds: Type.Integer(), minutes: Type.Integer(), hours: Type.Integer(), days: Type.Integer() }),
  memory: Type.Object({ rssMB: Type.Number(), heapUsedMB: Type.Number() }),
  checks: Type.Object({ shuttingDown: Type.Boolean() })
})

const Probe = Type.Object({ status: Type.String() })

// Probes are never limited and are answered while draining (they report it).
const probeConfig = { duringShutdown: true }

export function uptime (seconds = process.uptime()) {
  const whole = Math.floor(seconds)
  return { seconds: whole, minutes: Math.floor(whole / 60), hours: Math.floor(whole / 3600), days: Math.floor(whole / 86400) }
}

const health: FastifyPluginAsyncTypebox = async (app) => {
  const { lifecycle } = app

  app.get('/health', {
    config: probeConfig,
    schema: { summary: 'Health for humans and load balancers', response: { 200: Health, 503: Health } }
  }, async (_request, reply) => {
    const { rss, heapUsed } = process.memoryUsage()
    const shuttingDown = lifecycle.shuttingDown
    reply.code(shuttingDown ? 503 : 200)
    return {
      status: shuttingDown ? 'unhealthy' as const : 'healthy' as const,
      timestamp: new Date().toISOString(),
      version: VERSION,
      uptime: uptime(),
      memory: { rssMB: Math.round(rss / MB), heapUsedMB: Math.round(heapUsed / MB) },
      checks: { shuttingDown }
    }
  })

  app.get('/health/live', {
    config: probeConfig,
    schema: { summary: 'Liveness: 200 while the process answers', response: { 200: Probe } }
  }, async () => ({ status: 'ok' }))

  app.get('/health/ready', {
    config: probeConfig,
    schema: { summary: 'Readiness: 503 while shutting down', response: { 200: Probe, 503: Probe } }
  }, async (_request, reply) => {
    if (lifecycle.shuttingDown) return reply.code(503).send({ status: 'shutting-down' })
    return { status: 'ready' }
  })
}

export default health
