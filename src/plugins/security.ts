import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'
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
  app.removeContentTypeParser(['text/plain'])
}, { name: 'security', dependencies: ['config'] })
