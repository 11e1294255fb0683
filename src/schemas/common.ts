import { type SchemaOptions, type Static, Type, type TSchema } from '@sinclair/typebox'

/** The SPEC §2 error body; routes add their own extra fields where they have them. */
export const ErrorBody = Type.Object({
  error: Type.String({ description: 'Human-readable message' }),
  code: Type.String({ description: 'Machine code, e.g. VALIDATION_ERROR' }),
  statusCode: Type.Integer()
}, { $id: 'ErrorBody', additionalProperties: true })

export const Timestamp = Type.String({ format: 'date-time' })

/*
 * Response schemas say "one of these strings" and "or null" with `enum` and
 * OpenAPI 3.0's `nullable`, never with a Union: fast-json-stringify writes an
 * anyOf by running Ajv on each branch of it for every response it serialises
 * (a date-time check per timestamp: 3 % of GET /api/sessions/:id).
 */
export const StringEnum = <T extends string>(values: readonly T[], options: SchemaOptions = {}) =>
  Type.Unsafe<T>({ ...options, type: 'string', enum: values })

export const Nullable = <T extends TSchema>(schema: T, options: SchemaOptions = {}) =>
  Type.Unsafe<Static<T> | null>({ ...schema, ...options, nullable: true })

/** The error responses every route may give, to spread into a response schema map. */
export const errorResponses = (...statusCodes: number[]): Record<number, TSchema> =>
  Object.fromEntries(statusCodes.map((status) => [status, Type.Ref(ErrorBody)]))

/*
 * Characters allowed in user text (SPEC §2.1, §3): no control characters
 * except tab, CR and LF; single-line text (names) has no CR or LF either.
 * No lone surrogates ("\udfff" in JSON): they are no text, and an upstream
 * API refuses them (issue 15). Both patterns are used with the `u` flag (Ajv
 * sets it), where a surrogate pair is one code point outside \uD800-\uDFFF.
 * HTTP (Ajv) and WebSocket (TypeBox compiler) schemas both build on these.
 */
export const TEXT_CHAR = '[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F\\uD800-\\uDFFF]'
export const LINE_CHAR = '[^\\x00-\\x08\\x0A-\\x1F\\x7F-\\x9F\\uD800-\\uDFFF]'
export const TEXT_RULE = 'without control characters (tab, CR and LF are allowed)'
export const LINE_RULE = 'on one line, without control characters'
