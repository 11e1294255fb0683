import { ApiError } from '@google/genai'
import { httpFailure, transportFailure, type UpstreamFailure } from '../upstream-errors.js'

/*
 * What a failed Gemini attempt means, read from @google/genai's error. The
 * SDK's ApiError message is Google's raw error body as JSON text (for stream
 * errors prefixed with "got status: …"), its `message` field sometimes being
 * JSON again; a proxy's 502 page arrives as HTML inside that JSON. All of it
 * is parsed defensively and only ever used for decisions and log codes, never
 * shown to a client.
 */

const RETRY_INFO = 'type.googleapis.com/google.rpc.RetryInfo'
const QUOTA_FAILURE = 'type.googleapis.com/google.rpc.QuotaFailure'

type Json = Record<string, unknown>

const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

function parseObject (text: string): Json | undefined {
  const start = text.indexOf('{')
  if (start === -1) return undefined
  try {
    const value: unknown = JSON.parse(text.slice(start))
    return isObject(value) ? value : undefined
  } catch {
    return undefined
  }
}

/** The `details` of Google's `{ error: { code, message, status, details } }`, unwrapping double encoding. */
export function parseErrorDetails (message: string): Json[] {
  let error = parseObject(message)?.error
  const details: Json[] = []
  // Bounded: a hostile or broken upstream cannot make this loop forever.
  for (let depth = 0; depth < 3 && isObject(error); depth++) {
    if (Array.isArray(error.details)) details.push(...error.details.filter(isObject))
    error = typeof error.message === 'string' ? parseObject(error.message)?.error : undefined
  }
  return details
}

/** "27s", "1.5s" (protobuf JSON Duration) or `{ seconds, nanos }` → milliseconds. */
export function parseDuration (value: unknown): number | undefined {
  if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?)s$/.exec(value.trim())
    return match === null ? undefined : Math.round(Number(match[1]) * 1000)
  }
  if (isObject(value)) {
    const seconds = Number(value.seconds ?? 0)
    const nanos = Number(value.nanos ?? 0)
    return Number.isFinite(seconds) && Number.isFinite(nanos) ? Math.round(seconds * 1000 + nanos / 1e6) : undefined
  }
  return undefined
}

function fromApiError (error: ApiError): UpstreamFailure {
  const status = error.status
  const details = parseErrorDetails(error.message)
  const retryInfo = details.find((detail) => detail['@type'] === RETRY_INFO)
  const perDayQuota = status === 429 && details.some((detail) =>
    detail['@type'] === QUOTA_FAILURE && Array.isArray(detail.violations) &&
    detail.violations.some((violation) => isObject(violation) && typeof violation.quotaId === 'string' && violation.quotaId.includes('PerDay')))
  return httpFailure(status, { retryDelayMs: retryInfo === undefined ? undefined : parseDuration(retryInfo.retryDelay), perDayQuota })
}

export function classifyGeminiError (error: unknown): UpstreamFailure {
  return error instanceof ApiError ? fromApiError(error) : transportFailure()
}
