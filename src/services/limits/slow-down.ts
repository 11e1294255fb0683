/*
 * Progressive speed limiting (SPEC §5): after `after` requests in a client's
 * window, request n waits (n − after) × delayMs, at most maxDelayMs, on a
 * timer. Hand-written because no Fastify plugin does this (express-slow-down
 * is Express middleware). It keeps no counter of its own: n is the general
 * rate limit's count (rate-limiter.ts).
 */

export interface SlowDownOptions {
  after: number
  delayMs: number
  maxDelayMs: number
}

/** The wait before the `n`-th request of a window is handled. */
export function delayFor (n: number, { after, delayMs, maxDelayMs }: SlowDownOptions): number {
  return n <= after ? 0 : Math.min((n - after) * delayMs, maxDelayMs)
}

export interface SlowDown {
  /** Calls `proceed` once the delay of the `n`-th request has passed: synchronously when there is none. */
  proceedAfter: (n: number, proceed: () => void) => void
  /** Requests currently waiting. */
  readonly waiting: number
  /** Lets every waiting request proceed now and delays none from then on (shutdown must not wait for the delays). */
  close: () => void
}

export function createSlowDown (options: SlowDownOptions): SlowDown {
  // Timer → its request's continuation; only delayed requests are here, and
  // each leaves when its timer fires, so nothing outlives its request.
  const waiting = new Map<NodeJS.Timeout, () => void>()
  let closed = false

  return {
    proceedAfter (n, proceed) {
      const ms = closed ? 0 : delayFor(n, options)
      if (ms === 0) return proceed()
      const timer = setTimeout(() => {
        waiting.delete(timer)
        proceed()
      }, ms)
      waiting.set(timer, proceed)
    },

    get waiting () { return waiting.size },

    close () {
      closed = true
      const released = [...waiting]
      waiting.clear()
      for (const [timer, proceed] of released) {
        clearTimeout(timer)
        proceed()
      }
    }
  }
}
