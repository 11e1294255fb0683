import fp from 'fastify-plugin'
import { Errors } from '../errors.js'
import { createLifecycle, type Lifecycle } from '../services/http/lifecycle.js'

declare module 'fastify' {
  interface FastifyInstance { lifecycle: Lifecycle }
  interface FastifyContextConfig {
    /** Served even while the instance drains (health probes report the state). */
    duringShutdown?: boolean
  }
}

/**
 * Shutdown state. While draining, in-flight requests finish, and every
 * response closes its connection: Fastify only closes connections that are
 * idle when closing starts, so a kept-alive connection that was busy would
 * otherwise hold the drain until SHUTDOWN_TIMEOUT_MS. A new request on such a
 * connection is told to go elsewhere (503), except the probes, which report
 * the draining state. Callback hooks: no promise per request.
 */
export default fp(async (app) => {
  const lifecycle = createLifecycle()
  app.decorate('lifecycle', lifecycle)
  app.addHook('preClose', async () => lifecycle.beginShutdown())
  app.addHook('onRequest', (request, _reply, done) => {
    if (lifecycle.shuttingDown && request.routeOptions.config.duringShutdown !== true) {
      return done(new Errors.SHUTTING_DOWN())
    }
    done()
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (lifecycle.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })
}, { name: 'lifecycle' })
