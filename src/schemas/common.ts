import { Type, type TSchema } from '@sinclair/typebox'

/** The SPEC §2 error body; routes add their own extra fields where they have them. */
export const ErrorBody = Type.Object({
  error: Type.String({ description: 'Human-readable message' }),
  code: Type.String({ description: 'Machine code, e.g. VALIDATION_ERROR' }),
  statusCode: Type.Integer()
}, { $id: 'ErrorBody', additionalProperties: true })

export const Timestamp = Type.String({ format: 'date-time' })

/** The error responses every route may give, to spread into a response schema map. */
export const errorResponses = (...statusCodes: number[]): Record<number, TSchema> =>
  Object.fromEntries(statusCodes.map((status) => [status, Type.Ref(ErrorBody)]))
