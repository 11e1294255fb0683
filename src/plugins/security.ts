import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'
import sjson from 'secure-json-parse'
import { Errors } from '../errors.js'
import { createOriginPolicy } from '../services/origins.js'

/**
 * Security headers (helmet, CSP `default-src 'self'`, HSTS in production only)
 * and CORS for the allowed browser origins.
 * @see https://github.com/fastify/fastify-helmet
 * @see https://github.com/fastify/fastify-cors
 */
export default fp(async (app) => {
  const { NODE_ENV } = app.config
  const isAllowedOrigin = createOriginPolicy(app.config)

  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: true,
      directives: { defaultSrc: ["'self'"] }
    },
    hsts: NODE_ENV === 'production' ? { maxAge: 31536000, includeSubDomains: true } : false
  })

  await app.register(cors, {
    // No Origin header (curl, servers, probes) → served without CORS headers.
    origin: (origin, callback) => callback(null, origin !== undefined && isAllowedOrigin(origin)),
    credentials: true,
    methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    allowedHeaders: ['Content-Type', 'Authorization', 'X-Requested-With'],
    maxAge: 600
  })

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
