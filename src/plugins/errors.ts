import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Errors, toErrorBody } from '../errors.js'

/**
 * The one error handler and the one not-found handler: the SPEC §2 shape
 * everywhere, every 5xx written to errors.log with its context, intentional
 * 503s (AI_UNAVAILABLE, STORE_UNAVAILABLE, SHUTTING_DOWN) kept as they are.
 */
export default fp(async (app) => {
  const { errors: errorLog } = app.logFiles

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const body = toErrorBody(error)
    if (body.statusCode >= 500) {
      errorLog.error({
        reqId: request.id,
        route: request.routeOptions.url ?? null,
        method: request.method,
        ip: request.ip,
        statusCode: body.statusCode,
        code: body.code,
        err: error // pino's serializer: type, message, stack, code
      }, 'request failed')
      request.log.error({ reqId: request.id, code: body.code, errType: error.name }, 'request failed')
    } else {
      request.log.debug({ reqId: request.id, code: body.code, statusCode: body.statusCode }, 'client error')
    }
    if (typeof body.retryAfter === 'number') reply.header('retry-after', String(body.retryAfter))
    return reply.code(body.statusCode).send(body)
  })

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0]
    return reply.code(404).send(toErrorBody(new Errors.NOT_FOUND(request.method, path)))
  })
}, { name: 'errors', dependencies: ['logging'] })
