import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { LogController, type FastifyHttpOptions } from 'fastify'
import type { Logger } from 'pino'
import { parseTrustProxy, type Config } from './config.js'

/*
 * The Fastify server options, shared by src/server.ts and test/helper.ts so
 * that tests parse, validate and time out exactly as production does.
 */
export function serverOptions (config: Config, logger: Logger): FastifyHttpOptions<Server, Logger> {
  return {
    loggerInstance: logger,
    // One line per request goes to requests.log (plugins/logging.ts); stdout
    // keeps the lifecycle log only.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    trustProxy: parseTrustProxy(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    // Node checks request timeouts only every 30 s by default; check every
    // second so a slow-body attack is cut close to REQUEST_TIMEOUT_MS.
    http: { connectionsCheckingInterval: Math.min(1000, config.REQUEST_TIMEOUT_MS) },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // We answer requests that arrive while draining ourselves (plugins/lifecycle.ts)
    // so that the body has the SPEC §2 error shape.
    return503OnClosing: false,
    routerOptions: {
      // Session ids may be 128 characters; longer ones must reach validation
      // (400) instead of silently missing the route (404).
      maxParamLength: 256
    },
    ajv: {
      customOptions: {
        // SPEC §2.1: unknown extra fields are ignored. 'all' because TypeBox
        // objects do not say additionalProperties: false.
        removeAdditional: 'all',
        useDefaults: true,
        coerceTypes: false,
        allErrors: false
      }
    }
  }
}
