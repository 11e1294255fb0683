import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Errors, fieldsOf, isPublicError } from '../errors.js'

interface ErrorBody {
  error: string
  code: string
  statusCode: number
  [field: string]: unknown
}

/** Fastify's and its plugins' own error codes, translated to ours. */
const FRAMEWORK_CODES: Record<string, { code: string, message?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: new Errors.UNSUPPORTED_MEDIA_TYPE().message },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'BAD_REQUEST', message: 'Content-Length does not match the body' },
  FST_ERR_VALIDATION: { code: 'VALIDATION_ERROR' }
}

/** "body/companionConfig/name must …" → "companionConfig.name must …" */
function validationMessage (error: FastifyError): string {
  const [first] = error.validation ?? []
  if (first === undefined) return error.message
  const path = first.instancePath.split('/').filter(Boolean)
  const missing = (first.params as { missingProperty?: string }).missingProperty
  if (missing !== undefined) path.push(missing)
  const field = path.length > 0 ? path.join('.') : error.validationContext ?? 'request'
  if (missing !== undefined) return `${field} is required`
  // A raw regular expression explains nothing to a client; schemas say what they mean.
  const patternMessage = (first as { parentSchema?: { patternMessage?: unknown } }).parentSchema?.patternMessage
  if (first.keyword === 'pattern' && typeof patternMessage === 'string') return `${field} ${patternMessage}`
  return `${field} ${first.message ?? 'is invalid'}`
}

export function toErrorBody (error: FastifyError): ErrorBody {
  if (error.validation !== undefined) {
    return { error: validationMessage(error), code: 'VALIDATION_ERROR', statusCode: 400 }
  }
  const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600
    ? error.statusCode
    : 500
  if (isPublicError(error)) {
    return { error: error.message, code: error.code, statusCode, ...fieldsOf(error) }
  }
  const known = FRAMEWORK_CODES[error.code]
  if (known !== undefined) {
    return { error: known.message ?? error.message, code: known.code, statusCode }
  }
  if (statusCode < 500) return { error: error.message, code: 'BAD_REQUEST', statusCode }
  // Never reveal an upstream or internal message (SPEC §2, §6).
  return { error: new Errors.INTERNAL_ERROR().message, code: 'INTERNAL_ERROR', statusCode }
}

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
    const error = new Errors.NOT_FOUND(request.method, path)
    return reply.code(404).send({ error: error.message, code: error.code, statusCode: 404 })
  })
}, { name: 'errors', dependencies: ['logging'] })
