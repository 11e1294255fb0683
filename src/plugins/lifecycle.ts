import fp from 'fastify-plugin'
import { Errors } from '../errors.js'
import { createLifecycle, type Lifecycle } from '../services/lifecycle.js'

declare module 'fastify' {
  interface FastifyInstance { lifecycle: Lifecycle }
  interface FastifyContextConfig {
    /** Served even while the instance drains (health probes report the state). */
    duringShutdown?: boolean
  }
}

/**
 * Shutdown state. While draining, in-flight requests finish, but a new
 * request on a kept-alive connection is told to go elsewhere (503 and
 * `Connection: close`), except the probes, which report the draining state.
 */
export default fp(async (app) => {
  const lifecycle = createLifecycle()
  app.decorate('lifecycle', lifecycle)
  app.addHook('preClose', async () => lifecycle.beginShutdown())
  app.addHook('onRequest', async (request, reply) => {
    if (lifecycle.shuttingDown && request.routeOptions.config.duringShutdown !== true) {
      reply.header('connection', 'close')
      throw new Errors.SHUTTING_DOWN()
    }
  })
}, { name: 'lifecycle' })
