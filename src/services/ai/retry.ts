import { MAX_TIMER_MS } from '../../config.js'
import type { UpstreamFailure } from './upstream-errors.js'

/*
 * The retry policy of SPEC §4.3 as pure functions, so that every branch is
 * testable without waiting.
 */

export interface RetryPolicy {
  maxAttempts: number
  baseMs: number
  /** Per-attempt timeout: a server-requested wait longer than this ends the retries. */
  timeoutMs: number
  random: () => number
}

/**
 * Exponential backoff with equal jitter: the n-th retry (0-based) waits
 * between half and all of `baseMs × 2ⁿ`, so retries neither stampede nor
 * collapse to zero.
 */
export function backoffDelay (retry: number, baseMs: number, random: () => number): number {
  const nominal = Math.min(baseMs * 2 ** retry, MAX_TIMER_MS) // a valid timer however many retries
  return nominal / 2 + random() * (nominal / 2)
}

/** How long to wait before the next attempt, or undefined to stop. `attempts` counts those made so far. */
export function nextRetryDelay (failure: UpstreamFailure, attempts: number, policy: RetryPolicy): number | undefined {
  if (!failure.retryable || attempts >= policy.maxAttempts) return undefined
  if (failure.retryDelayMs !== undefined) {
    return failure.retryDelayMs < policy.timeoutMs ? failure.retryDelayMs : undefined
  }
  return backoffDelay(attempts - 1, policy.baseMs, policy.random)
}
