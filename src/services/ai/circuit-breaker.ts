import type { CircuitState } from './outcome.js'

/*
 * SPEC §4.4: after `threshold` consecutive failed requests, calls stop for
 * `openMs` (callers answer with a fallback at once), then one trial call
 * decides: success closes the circuit, failure opens it again. Hand-written
 * because the state is three variables and the per-day-quota rule (open for
 * a server-given time at once) does not fit the common breaker libraries.
 */

export interface CircuitBreakerOptions {
  threshold?: number
  openMs?: number
  now: () => number
}

export function createCircuitBreaker ({ threshold = 5, openMs = 30_000, now }: CircuitBreakerOptions) {
  let state: CircuitState = 'closed'
  let failures = 0
  let openUntil = 0
  let trialTaken = false

  function current (): CircuitState {
    if (state === 'open' && now() >= openUntil) {
      state = 'half-open'
      trialTaken = false
    }
    return state
  }

  function openFor (ms: number): void {
    state = 'open'
    openUntil = now() + ms
    failures = 0
    trialTaken = false
  }

  return {
    state: current,

    /** Whether a request may call upstream now; when half-open, only the first one (the trial) may. */
    allow (): boolean {
      const at = current()
      if (at === 'closed') return true
      if (at === 'half-open' && !trialTaken) {
        trialTaken = true
        return true
      }
      return false
    },

    success (): void {
      state = 'closed'
      failures = 0
      trialTaken = false
    },

    failure (): void {
      const at = current()
      if (at === 'half-open') openFor(openMs)
      else if (at === 'closed' && ++failures >= threshold) openFor(openMs)
    },

    /** A request that ended without a verdict (the client left): a later request gets the trial. */
    abandon (): void {
      if (current() === 'half-open') trialTaken = false
    },

    openFor,

    /** Milliseconds until the circuit lets a trial through (0 unless open). */
    remainingMs (): number {
      return current() === 'open' ? openUntil - now() : 0
    }
  }
}

export type CircuitBreaker = ReturnType<typeof createCircuitBreaker>
