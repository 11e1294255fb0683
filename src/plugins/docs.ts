import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { ErrorBody } from '../schemas/common.js'
import { VERSION } from '../version.js'

/**
 * OpenAPI 3 document generated from the route schemas, served at /docs/json,
 * with Swagger UI at /docs. Registered before the routes: @fastify/swagger
 * collects them in an onRoute hook.
 * @see https://github.com/fastify/fastify-swagger
 * @see https://github.com/fastify/fastify-swagger-ui
 */
export default fp(async (app) => {
  app.addSchema(ErrorBody)
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: "Lover's Code backend",
        description: 'AI companion chat and live multiplayer sessions. WebSocket protocol: see README (GET /ws).',
        version: VERSION
      },
      components: {
        securitySchemes: { statsToken: { type: 'http', scheme: 'bearer' } }
      }
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // The UI's inline bootstrap script needs hashes in the CSP; the plugin
    // computes them and sets its own header on its pages only.
    staticCSP: true
  })
}, { name: 'docs' })
