import fp from 'fastify-plugin'
import type { Config } from '../config.js'

declare module 'fastify' {
  interface FastifyInstance { config: Config }
}

/** Makes the validated configuration visible to every plugin and route. */
export default fp<{ config: Config }>(async (app, { config }) => {
  app.decorate('config', Object.freeze({ ...config }))
}, { name: 'config' })
