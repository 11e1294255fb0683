/*
 * What went wrong with one attempt, in the policy's terms. Each provider
 * turns its SDK's errors into an UpstreamFailure (providers/*); which
 * failures are retried and which count against the circuit is decided here,
 * once for every provider.
 */

export interface UpstreamFailure {
  /** Short machine code for logs and metrics: HTTP_503, TIMEOUT, NETWORK_ERROR, … */
  code: string
  status?: number
  retryable: boolean
  /** How long the server asked us to wait (Gemini's RetryInfo, an OpenAI-compatible Retry-After). */
  retryDelayMs?: number
  /** A QuotaFailure naming a per-day quota: waiting seconds will not help. */
  perDayQuota: boolean
}

// SPEC §4.3: never 400/401/403/404 (nor anything else not listed).
const RETRYABLE_STATUSES = new Set([429, 500, 502, 503, 504])

/** An HTTP error answer of the upstream API. */
export function httpFailure (status: number, { retryDelayMs, perDayQuota = false }: { retryDelayMs?: number, perDayQuota?: boolean } = {}): UpstreamFailure {
  return {
    code: perDayQuota ? 'QUOTA_PER_DAY' : `HTTP_${status}`,
    status,
    retryable: RETRYABLE_STATUSES.has(status) && !perDayQuota,
    ...(retryDelayMs === undefined ? {} : { retryDelayMs }),
    perDayQuota
  }
}

/**
 * A transport-level failure: refused, reset, DNS, a truncated stream, an
 * unparsable chunk, an error object inside a 200 stream. Worth another attempt.
 */
export const transportFailure = (code = 'NETWORK_ERROR'): UpstreamFailure => ({ code, retryable: true, perDayQuota: false })

/** Our own per-attempt timeout fired. */
export const TIMEOUT: UpstreamFailure = { code: 'TIMEOUT', retryable: true, perDayQuota: false }

/**
 * Whether a failure says the upstream is unhealthy (429, 5xx, network,
 * timeout), so that it counts toward opening the circuit. A 4xx other than
 * 429 depends on what was sent (a client's text, a bad key or model name):
 * counting it would let one client's messages cut everyone off (issue 15).
 */
export const isUpstreamHealthFailure = (failure: UpstreamFailure): boolean =>
  failure.status === undefined || failure.status === 429 || failure.status >= 500
