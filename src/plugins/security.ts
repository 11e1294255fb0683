import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import helmet, { type HelmetOptions } from 'helmet'
import sjson from 'secure-json-parse'
import { Errors } from '../errors.js'
import { createOriginPolicy } from '../services/origins.js'

/**
 * Runs helmet once against a recording response and returns the headers it
 * sets. Our helmet options hold no per-request parts (no CSP nonces), so the
 * headers are the same for every response. @fastify/helmet instead rebuilds
 * the helmet middleware, CSP parsing included, on every request, which cost
 * a large share of a small route's throughput (SPEC §11).
 */
function helmetHeaders (options: HelmetOptions): Array<[string, string]> {
  const headers = new Map<string, string>()
  const recorder = {
    setHeader: (name: string, value: string | number) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase())
  }
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => {})
  return [...headers]
}

const kBodyTimer = Symbol('bodyTimer')

declare module 'fastify' {
  interface FastifyRequest { [kBodyTimer]: NodeJS.Timeout | null }
}

/**
 * Node 20 enforces `requestTimeout` only until a request's headers are in: a
 * body that then trickles in a byte at a time is never cut (checked against
 * Node 20.20). So a request with a body gets a timer from its headers on;
 * when it fires before the body is parsed, the body stream fails with a 408,
 * which the error handler renders, and the connection is closed.
 */
function guardSlowBodies (app: FastifyInstance, timeoutMs: number): void {
  app.decorateRequest(kBodyTimer, null)
  const clear = (request: FastifyRequest) => {
    if (request[kBodyTimer] === null) return
    clearTimeout(request[kBodyTimer])
    request[kBodyTimer] = null
  }
  app.addHook('onRequest', (request, reply, done) => {
    const { headers } = request
    if (headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) return done()
    request[kBodyTimer] = setTimeout(() => {
      request[kBodyTimer] = null
      reply.header('connection', 'close')
      request.raw.emit('error', new Errors.REQUEST_TIMEOUT(timeoutMs))
    }, timeoutMs)
    done()
  })
  // The body is in (or the request failed before it was read).
  app.addHook('preValidation', (request, _reply, done) => { clear(request); done() })
  app.addHook('onResponse', (request, _reply, done) => { clear(request); done() })
  app.addHook('onRequestAbort', (request, done) => { clear(request); done() })
}

/**
 * Security headers (helmet, CSP `default-src 'self'`, HSTS in production only)
 * and CORS for the allowed browser origins.
 * @see https://helmetjs.github.io/
 * @see https://github.com/fastify/fastify-cors
 */
export default fp(async (app) => {
  const { NODE_ENV, REQUEST_TIMEOUT_MS } = app.config
  const isAllowedOrigin = createOriginPolicy(app.config)

  const securityHeaders = helmetHeaders({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: { defaultSrc: ["'self'"] }
    },
    strictTransportSecurity: NODE_ENV === 'production' ? { maxAge: 31536000, includeSubDomains: true } : false
  })
  app.addHook('onRequest', (_request, reply, done) => {
    for (const [name, value] of securityHeaders) reply.header(name, value)
    done()
  })

  await app.register(cors, {
    // No Origin header (curl, servers, probes) → served without CORS headers.
    origin: (origin, callback) => callback(null, origin !== undefined && isAllowedOrigin(origin)),
    credentials: true,
    methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    allowedHeaders: ['Content-Type', 'Authorization', 'X-Requested-With'],
    maxAge: 600
  })

  guardSlowBodies(app, REQUEST_TIMEOUT_MS)

  // Only JSON bodies are accepted: without this, text/plain would be parsed
  // as a string and fail validation with 400 instead of 415.
  app.removeContentTypeParser(['text/plain', 'application/json'])
  // Fastify's own JSON parser reports a prototype-pollution attempt as plain
  // "invalid JSON"; this one (same secure-json-parse underneath) says which.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') return done(new Errors.INVALID_JSON('Request body is empty but Content-Type is application/json'))
    try {
      done(null, sjson.parse(body as string, undefined, { protoAction: 'error', constructorAction: 'error' }))
    } catch (error) {
      const poisoned = error instanceof SyntaxError && /prototype/.test(error.message)
      done(new Errors.INVALID_JSON(poisoned
        ? 'Request body contains a forbidden __proto__ or constructor key'
        : 'Request body is not valid JSON'))
    }
  })
}, { name: 'security', dependencies: ['config'] })
