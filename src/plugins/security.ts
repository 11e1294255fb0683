import cors from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import sjson from 'secure-json-parse'
import { Errors } from '../errors.js'
import { createOriginPolicy } from '../services/origins.js'
import { securityHeaders } from '../services/security-headers.js'

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
  const { REQUEST_TIMEOUT_MS } = app.config
  const isAllowedOrigin = createOriginPolicy(app.config)

  const headers = securityHeaders(app.config)
  app.addHook('onRequest', (_request, reply, done) => {
    for (const [name, value] of headers) reply.header(name, value)
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
