import createError from '@fastify/error'

/*
 * Every error a client may see, with its machine code and status. Routes and
 * services throw these; the error handler (plugins/errors.ts) renders them in
 * the SPEC §2 shape. Anything not listed here that ends in a 5xx is shown to
 * the client only as INTERNAL_ERROR.
 */
export const Errors = {
  NOT_FOUND: createError('NOT_FOUND', 'Route %s %s not found', 404),
  VALIDATION_ERROR: createError('VALIDATION_ERROR', '%s', 400),
  INVALID_JSON: createError('INVALID_JSON', '%s', 400),
  PAYLOAD_TOO_LARGE: createError('PAYLOAD_TOO_LARGE', 'Request body is larger than %d bytes', 413),
  UNSUPPORTED_MEDIA_TYPE: createError('UNSUPPORTED_MEDIA_TYPE', 'Request body must be application/json', 415),
  UNAUTHORIZED: createError('UNAUTHORIZED', 'A valid bearer token is required', 401),
  SESSION_NOT_FOUND: createError('SESSION_NOT_FOUND', 'Session not found or expired', 404),
  RATE_LIMITED: createError('RATE_LIMITED', 'Too many requests, retry in %d seconds', 429),
  SHUTTING_DOWN: createError('SHUTTING_DOWN', 'Server is shutting down, retry on another instance', 503),
  AI_UNAVAILABLE: createError('AI_UNAVAILABLE', 'The AI companion is temporarily unavailable', 503),
  STORE_UNAVAILABLE: createError('STORE_UNAVAILABLE', 'Session storage is temporarily unavailable', 503),
  INTERNAL_ERROR: createError('INTERNAL_ERROR', 'Internal server error', 500)
} as const

export type ErrorCode = keyof typeof Errors

const publicCodes = new Set<string>(Object.keys(Errors))

/** Our own coded errors: their message and extra fields are safe to show. */
export function isPublicError (error: { code?: unknown }): boolean {
  return typeof error.code === 'string' && publicCodes.has(error.code)
}

/**
 * Extra body fields an error carries (SPEC §4.5: `fallback`, `retryAfter`,
 * `sessionId`, …). A numeric `retryAfter` also becomes the Retry-After header.
 */
export const kErrorFields = Symbol('errorFields')

export function withFields<E extends Error> (error: E, fields: Record<string, unknown>): E {
  Object.defineProperty(error, kErrorFields, { value: fields, enumerable: false })
  return error
}

export function fieldsOf (error: Error): Record<string, unknown> | undefined {
  return (error as Error & { [kErrorFields]?: Record<string, unknown> })[kErrorFields]
}
