import createError from '@fastify/error'
import type { FastifyError } from 'fastify'

/*
 * Every error a client may see, with its machine code and status. Routes and
 * services throw these; the error handler (plugins/errors.ts) renders them in
 * the SPEC §2 shape. Anything not listed here that ends in a 5xx is shown to
 * the client only as INTERNAL_ERROR.
 */
/**
 * For the client errors a flood of requests can produce (unknown URLs and
 * sessions, rate-limit refusals): only 5xx reach errors.log with a stack, so
 * these capture none; the stack trace was 6 % of a 404's cost (SPEC §11).
 */
const withoutStack = (code: string, message: string, statusCode: number) => createError(code, message, statusCode, Error, false)

export const Errors = {
  NOT_FOUND: withoutStack('NOT_FOUND', 'Route %s %s not found', 404),
  VALIDATION_ERROR: createError('VALIDATION_ERROR', '%s', 400),
  INVALID_JSON: createError('INVALID_JSON', '%s', 400),
  BAD_REQUEST: createError('BAD_REQUEST', '%s', 400),
  EXPECTATION_FAILED: createError('EXPECTATION_FAILED', 'Only "Expect: 100-continue" is supported', 417),
  BAD_URL: createError('BAD_URL', 'The URL is not valid (malformed percent-encoding?)', 400),
  REQUEST_TIMEOUT: createError('REQUEST_TIMEOUT', 'The request body did not arrive within %d ms', 408),
  PAYLOAD_TOO_LARGE: createError('PAYLOAD_TOO_LARGE', 'Request body is larger than %d bytes', 413),
  UNSUPPORTED_MEDIA_TYPE: createError('UNSUPPORTED_MEDIA_TYPE', 'Request body must be application/json', 415),
  UNAUTHORIZED: createError('UNAUTHORIZED', 'A valid bearer token is required', 401),
  SESSION_NOT_FOUND: withoutStack('SESSION_NOT_FOUND', 'Session not found or expired', 404),
  NOT_A_COMPANION_SESSION: createError('NOT_A_COMPANION_SESSION', 'This is a multiplayer session, not a companion conversation', 409),
  NOTHING_TO_REGENERATE: createError('NOTHING_TO_REGENERATE', 'The conversation has no message of yours to answer again yet', 409),
  SESSION_BUSY: createError('SESSION_BUSY', 'The companion is still answering in this session; retry when the reply is done', 409),
  REQUEST_IN_PROGRESS: createError('REQUEST_IN_PROGRESS', 'A request with this Idempotency-Key is still being answered', 409),
  IDEMPOTENCY_KEY_REUSED: createError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used for a request with a different body', 422),
  SESSION_NOT_DELETABLE: createError('SESSION_NOT_DELETABLE', 'Only companion sessions can be erased; a multiplayer session ends when its participants leave', 409),
  RATE_LIMITED: withoutStack('RATE_LIMITED', 'Too many requests, retry after %d s', 429),
  SHUTTING_DOWN: createError('SHUTTING_DOWN', 'Server is shutting down, retry on another instance', 503),
  AI_UNAVAILABLE: createError('AI_UNAVAILABLE', 'The AI companion is temporarily unavailable', 503),
  STORE_UNAVAILABLE: createError('STORE_UNAVAILABLE', 'Session storage is temporarily unavailable', 503),
  INTERNAL_ERROR: createError('INTERNAL_ERROR', 'Internal server error', 500),
  // WebSocket (SPEC §3): refusals of the upgrade request (HTTP), then the
  // codes of `error` events (their status is never sent).
  UPGRADE_REQUIRED: createError('UPGRADE_REQUIRED', 'GET /ws expects a WebSocket upgrade request', 426),
  FORBIDDEN_ORIGIN: createError('FORBIDDEN_ORIGIN', 'This Origin may not open a WebSocket connection', 403),
  TOO_MANY_CONNECTIONS: createError('TOO_MANY_CONNECTIONS', 'This server has too many WebSocket connections, retry later', 503),
  TOO_MANY_CONNECTIONS_FROM_IP: createError('TOO_MANY_CONNECTIONS_FROM_IP', 'Too many WebSocket connections from this address (at most %d)', 429),
  INVALID_MESSAGE: createError('INVALID_MESSAGE', '%s', 400),
  UNKNOWN_EVENT: createError('UNKNOWN_EVENT', 'Unknown event, expected one of: %s', 400),
  NOT_IN_SESSION: createError('NOT_IN_SESSION', 'Join session %s before sending to it', 403),
  // One code for two reasons (SPEC §3's code list is fixed): the session has
  // its participants, or the server is at capacity. The message says which.
  SESSION_FULL: createError('SESSION_FULL', '%s', 409),
  TOO_MANY_SESSIONS: createError('TOO_MANY_SESSIONS', 'One connection may be in at most %d sessions at once; leave one first', 409)
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

/** RATE_LIMITED with its `retryAfter` field (and so its Retry-After header). */
export const rateLimited = (retryAfter: number) => withFields(new Errors.RATE_LIMITED(retryAfter), { retryAfter })

export function fieldsOf (error: Error): Record<string, unknown> | undefined {
  return (error as Error & { [kErrorFields]?: Record<string, unknown> })[kErrorFields]
}

/** The SPEC §2 error body. */
export interface ErrorBody {
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

/**
 * What a client is told about any error: our coded errors as they are (with
 * their extra fields), Fastify's translated, validation errors naming the
 * field, and every other 5xx as a bare INTERNAL_ERROR.
 */
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
