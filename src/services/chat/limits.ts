/*
 * The per-connection WebSocket limits of SPEC §3 that are counters, not
 * library options: messages, frames and bytes per connection. Hand-written
 * because they must live on objects we already have (no timer, no allocation
 * per message); rate-limit libraries key a store by string per request,
 * which is the cost we avoid here. (Connection caps: limits/connection-counts.ts.)
 */

/** Per-connection fixed-window counter, kept on the connection itself. */
export interface RateWindow {
  windowStart: number
  count: number
}

export const RATE_OK = 0
/** Over the rate: the frame is dropped and answered with RATE_LIMITED. */
export const RATE_LIMITED = 1
/** The first frame over twice the rate in one window: the connection is closed (1008). */
export const RATE_ABUSIVE = 2
/** Any later one, while the close is under way: dropped unread. */
export const RATE_CLOSING = 3
export type RateVerdict = typeof RATE_OK | typeof RATE_LIMITED | typeof RATE_ABUSIVE | typeof RATE_CLOSING

export interface MessageRateOptions {
  rate: number
  windowMs: number
  now?: () => number
}

export function createMessageRate ({ rate, windowMs, now = Date.now }: MessageRateOptions) {
  /** Starts a new window when the current one has ended. */
  function roll (window: RateWindow): void {
    const at = now()
    if (at - window.windowStart < windowMs) return
    window.windowStart = at
    window.count = 0
  }

  return {
    /** Counts one frame and says what to do with it. */
    check (window: RateWindow): RateVerdict {
      roll(window)
      const count = ++window.count
      if (count <= rate) return RATE_OK
      if (count <= 2 * rate) return RATE_LIMITED
      return count === 2 * rate + 1 ? RATE_ABUSIVE : RATE_CLOSING
    },
    /**
     * Counts `messages` more against the current window, as if sent (a
     * history sent on request costs its share). Never past the rate itself:
     * frames after it are refused (RATE_LIMITED), but only frames the
     * client sends can make it abusive.
     */
    charge (window: RateWindow, messages: number): void {
      roll(window)
      window.count = Math.max(window.count, Math.min(window.count + messages, rate))
    },
    /** Whole seconds until the current window ends (at least 1). */
    retryAfterSeconds (window: RateWindow): number {
      return Math.max(1, Math.ceil((window.windowStart + windowMs - now()) / 1000))
    }
  }
}
