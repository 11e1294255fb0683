import { finished } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import sjson from 'secure-json-parse'
import { Errors } from '../errors.js'
import { createCorsHook } from '../services/http/cors.js'
import { createOriginPolicy } from '../services/http/origins.js'
import { securityHeaders } from '../services/http/security-headers.js'

const kBodyTimer = Symbol('bodyTimer')

declare module 'fastify' {
  interface FastifyRequest { [kBodyTimer]: NodeJS.Timeout | null }
}

const hasBody = (request: FastifyRequest) =>
  request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined

/**
 * Slow-body defence. Node's own `requestTimeout` counts from a request's first
 * byte (so a slow-down delay would count against the body), fires only on its
 * once-a-second check, and answers below Fastify (no request log line). So:
 * - while Fastify reads a body (from preParsing, i.e. after any slow-down
 *   delay), a timer makes the body stream fail with a 408 after
 *   REQUEST_TIMEOUT_MS, which the error handler renders (Node's timeout is
 *   set later, as a backstop: src/server-options.ts);
 * - a response sent before its request's body was read (415, 429, a GET with
 *   a body…) closes the connection, or Node would keep reading and
 *   discarding that body until its own backstop, and then write a second,
 *   unasked-for 408 on the same socket.
 */
function guardSlowBodies (app: FastifyInstance, timeoutMs: number): void {
  app.decorateRequest(kBodyTimer, null)
  const clear = (request: FastifyRequest) => {
    if (request[kBodyTimer] === null) return
    clearTimeout(request[kBodyTimer])
    request[kBodyTimer] = null
  }
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (hasBody(request)) {
      // Only requests with a body pay for the timer and its cleanup listener.
      finished(reply.raw, () => clear(request))
      request[kBodyTimer] = setTimeout(() => {
        request[kBodyTimer] = null
        // Only while the body reader listens may its stream fail; otherwise
        // (nobody reads this body) the connection itself is cut.
        if (!reply.sent && request.raw.listenerCount('error') > 0) {
          reply.header('connection', 'close')
          request.raw.emit('error', new Errors.REQUEST_TIMEOUT(timeoutMs))
        } else {
          request.raw.socket?.destroy()
        }
      }, timeoutMs)
    }
    done(null, payload)
  })
  app.addHook('preValidation', (request, _reply, done) => { clear(request); done() })
  app.addHook('onSend', (request, reply, payload, done) => {
    if (hasBody(request) && !request.raw.readableEnded) reply.header('connection', 'close')
    done(null, payload)
  })
}

/**
 * Security headers (helmet, CSP `default-src 'self'`, HSTS in production only),
 * CORS for the allowed browser origins, and the SPEC §2 shape for requests
 * Node would refuse with empty bodies (no Host, an unsupported Expect).
 * @see https://helmetjs.github.io/
 */
export default fp(async (app) => {
  const { REQUEST_TIMEOUT_MS } = app.config

  const headers = securityHeaders(app.config)
  app.addHook('onRequest', (request, reply, done) => {
    for (const [name, value] of headers) reply.header(name, value)
    // RFC 9112 §3.2; Node's own refusal (requireHostHeader) is an empty 400.
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
      reply.header('connection', 'close')
      return done(new Errors.BAD_REQUEST('An HTTP/1.1 request needs a Host header'))
    }
    done()
  })

  // An Expect other than 100-continue: Node would answer an empty 417 itself.
  // No request exists for Fastify, so the answer is written here.
  const expectationFailed = new Errors.EXPECTATION_FAILED()
  const expectationBody = JSON.stringify({ error: expectationFailed.message, code: expectationFailed.code, statusCode: 417 })
  app.server.on('checkExpectation', (_request, response) => {
    for (const [name, value] of headers) response.setHeader(name, value)
    response.writeHead(417, {
      'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(expectationBody), connection: 'close'
    }).end(expectationBody)
  })

  // After the security headers, so an answered preflight carries them too.
  app.addHook('onRequest', createCorsHook(createOriginPolicy(app.config)))

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
