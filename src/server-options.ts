import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { LogController, type FastifyError, type FastifyHttpOptions, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { parseTrustProxy, type Config } from './config.js'
import { Errors, toErrorBody } from './errors.js'
import { securityHeaders } from './services/http/security-headers.js'

/*
 * The Fastify server options, shared by src/server.ts and test/helper.ts so
 * that tests parse, validate and time out exactly as production does.
 */
const MAX_PARAM_LENGTH = 256

/** Errors Node's HTTP parser raises before Fastify sees a request. */
const CLIENT_ERRORS: Record<string, [status: number, reason: string, code: string, message: string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'REQUEST_TIMEOUT', 'The request did not arrive in time'],
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'HEADERS_TOO_LARGE', 'Request headers are too large']
}
const MALFORMED: [number, string, string, string] = [400, 'Bad Request', 'BAD_REQUEST', 'Malformed HTTP request']

/**
 * Fastify's default answer to a malformed request has its own body shape;
 * this one keeps SPEC §2's, with the security headers. Hooks never run for
 * these: there is no request.
 */
function clientErrorHandler (headers: ReadonlyArray<readonly [string, string]>) {
  const securityLines = headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')
  return (error: NodeJS.ErrnoException, socket: Duplex): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    const [status, reason, code, message] = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED
    const body = JSON.stringify({ error: message, code, statusCode: status })
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\n${securityLines}Connection: close\r\n\r\n${body}`)
    }
    socket.destroy(error)
  }
}

export function serverOptions (config: Config, logger: Logger): FastifyHttpOptions<Server, Logger> {
  const headers = securityHeaders(config)
  // The headers are part of the request: never allowed longer than a body.
  const headersTimeout = Math.min(config.HEADERS_TIMEOUT_MS, config.REQUEST_TIMEOUT_MS)
  // Node checks request timeouts only every 30 s by default; check every
  // second so a slow request is cut close to its timeout.
  const connectionsCheckingInterval = Math.min(1000, headersTimeout)
  return {
    loggerInstance: logger,
    // request.log is the app logger itself: our few request-scoped lines carry
    // reqId explicitly, and a pino child per request (its bindings serialised
    // through redaction) was a measurable share of a small route's CPU.
    childLoggerFactory: (parent) => parent,
    // One line per request goes to requests.log (plugins/logging.ts); stdout
    // keeps the lifecycle log only.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    trustProxy: parseTrustProxy(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT,
    // Node cuts a request still arriving requestTimeout after its first
    // byte, on one of its checks, below Fastify (its request is logged as
    // aborted). The security plugin's body timer answers first (from when the
    // body is read: precise, logged as a 408), so Node's clock must outlast
    // the headers, the slow-down delay and the body timer, plus one check:
    // it is the backstop for a request that never reaches that timer. Were
    // both REQUEST_TIMEOUT_MS, which answered would be a race.
    requestTimeout: headersTimeout + config.SLOW_DOWN_MAX_DELAY_MS + config.REQUEST_TIMEOUT_MS + connectionsCheckingInterval,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    http: {
      connectionsCheckingInterval,
      // Counted from a request's first byte; a socket that never sends
      // anything is closed this long after it opened (not only by the
      // request timeout, much later).
      headersTimeout,
      // Node would answer a missing Host with an empty 400 of its own; the
      // security plugin refuses it in the SPEC §2 shape instead.
      requireHostHeader: false
    },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // We answer requests that arrive while draining ourselves (plugins/lifecycle.ts)
    // so that the body has the SPEC §2 error shape.
    return503OnClosing: false,
    routerOptions: {
      // Session ids may be 128 characters; longer ones must reach validation
      // (400) instead of silently missing the route (404).
      maxParamLength: MAX_PARAM_LENGTH
    },
    clientErrorHandler: clientErrorHandler(headers),
    // Fastify answers these before routing, with its own body shape (and a
    // 414 for long parameters); keep the SPEC §2 error shape instead.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      // No hook runs for these, so the headers and the requests.log line are
      // written here (the log plugin decorates the same root instance).
      for (const [name, value] of headers) reply.header(name, value)
      reply.header('x-request-id', request.id)
      const rejected = error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new Errors.VALIDATION_ERROR(`A path parameter is longer than ${MAX_PARAM_LENGTH} characters`)
        : new Errors.BAD_URL()
      reply.code(400).send(toErrorBody(rejected))
      request.server.logRequest(request, 400, null)
    },
    ajv: {
      customOptions: {
        // SPEC §2.1: unknown extra fields are ignored. 'all' because TypeBox
        // objects do not say additionalProperties: false.
        removeAdditional: 'all',
        useDefaults: true,
        coerceTypes: false,
        allErrors: false,
        // Gives errors their schema, so a failed `pattern` can be explained
        // with the schema's `patternMessage` (plugins/errors.ts).
        verbose: true,
        keywords: ['patternMessage']
      }
    }
  }
}
