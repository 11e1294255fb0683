import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    /** Random at boot: tells instances apart in /health, /api/stats and the dashboard. */
    instanceId: string
  }
}

/** Makes the validated configuration, and who this instance is, visible to every plugin and route. */
export default fp<{ config: Config }>(async (app, { config }) => {
  app.decorate('config', Object.freeze({ ...config }))
  app.decorate('instanceId', randomUUID())
}, { name: 'config' })
