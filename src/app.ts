import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import aiPlugin from './plugins/ai.js'
import configPlugin from './plugins/config.js'
import docsPlugin from './plugins/docs.js'
import errorsPlugin from './plugins/errors.js'
import lifecyclePlugin from './plugins/lifecycle.js'
import loggingPlugin from './plugins/logging.js'
import metricsPlugin from './plugins/metrics.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import securityPlugin from './plugins/security.js'
import sessionsPlugin from './plugins/sessions.js'
import websocketPlugin from './plugins/websocket.js'
import companionRoutes from './routes/companion.js'
import healthRoutes from './routes/health.js'
import rootRoutes from './routes/root.js'
import sessionRoutes from './routes/sessions.js'
import statsRoutes from './routes/stats.js'
import { serverOptions } from './server-options.js'
import type { SessionStore } from './services/sessions/store.js'

export interface BuildOptions {
  /** A session store to use instead of the one the config selects (its creator closes it). */
  sessionStore?: SessionStore
}

/**
 * Builds the whole application from a validated config. Never listens:
 * src/server.ts does that, and tests build exactly this app.
 */
export async function buildApp (config: Config, logger: Logger, options: BuildOptions = {}) {
  const app = Fastify(serverOptions(config, logger)).withTypeProvider<TypeBoxTypeProvider>()

  // Order matters (SPEC: configuration, logging, security, rate limits,
  // metrics, AI, sessions, WebSocket chat, then routes):
  // - each plugin may use what the ones above it decorate (logFiles, metrics…);
  // - lifecycle right after security: a request refused while draining has
  //   already got its request id and security headers, and is refused
  //   before rate limits, metrics or handlers see it;
  // - docs and rate limits hook onRoute, so they precede every route; docs
  //   come first so their own UI routes are not rate-limited;
  // - onClose runs in reverse: the AI plugin waits for in-flight outcomes and
  //   WebSockets close with 1001 before the log files are flushed and closed.
  await app.register(configPlugin, { config })
  await app.register(loggingPlugin)
  await app.register(errorsPlugin)
  await app.register(securityPlugin)
  await app.register(lifecyclePlugin)
  await app.register(docsPlugin)
  await app.register(rateLimitPlugin)
  await app.register(metricsPlugin)
  await app.register(aiPlugin)
  await app.register(sessionsPlugin, { store: options.sessionStore })
  await app.register(websocketPlugin)

  await app.register(rootRoutes)
  await app.register(healthRoutes)
  await app.register(companionRoutes)
  await app.register(sessionRoutes)
  await app.register(statsRoutes)

  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
