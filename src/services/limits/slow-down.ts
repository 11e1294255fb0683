/*
 * Progressive speed limiting (SPEC §5): after `after` requests in a client's
 * window, request n waits (n − after) × delayMs, at most maxDelayMs, on a
 * timer. Hand-written because no Fastify plugin does this (express-slow-down
 * is Express middleware); the counters sit behind a small store interface so
 * a Redis store (INCR + PEXPIRE) can replace the in-memory one.
 */

export interface SlowDownStore {
  /**
   * Counts one request of `key` and returns its number in the key's current
   * window (1 for the first). The memory store answers synchronously so the
   * request path allocates nothing; a networked store returns a promise.
   */
  hit: (key: string) => number | Promise<number>
  close: () => Promise<void>
}

export interface MemorySlowDownStoreOptions {
  windowMs: number
  /** Clients tracked at once; past it the window closest to its end is dropped. */
  maxKeys: number
  /** How often ended windows are removed; the request path never scans. */
  sweepIntervalMs?: number
  now?: () => number
}

interface ClientWindow { count: number, start: number }

export function createMemorySlowDownStore ({ windowMs, maxKeys, sweepIntervalMs = Math.min(60_000, windowMs), now = Date.now }: MemorySlowDownStoreOptions): SlowDownStore & { sweep: () => number, readonly size: number } {
  // Insertion order is window-start order (a new window re-inserts its key),
  // so the first key is always the one whose window ends soonest and a sweep
  // stops at the first live window.
  const windows = new Map<string, ClientWindow>()

  function sweep (): number {
    const at = now()
    let removed = 0
    for (const [key, window] of windows) {
      if (at - window.start < windowMs) break
      windows.delete(key)
      removed++
    }
    return removed
  }

  const timer = setInterval(sweep, sweepIntervalMs).unref()

  return {
    sweep,
    get size () { return windows.size },

    hit (key) {
      const at = now()
      const window = windows.get(key)
      if (window !== undefined && at - window.start < windowMs) return ++window.count
      if (window !== undefined) windows.delete(key)
      else if (windows.size >= maxKeys) windows.delete(windows.keys().next().value as string)
      windows.set(key, { count: 1, start: at })
      return 1
    },

    async close () {
      clearInterval(timer)
      windows.clear()
    }
  }
}

export interface SlowDownOptions {
  store: SlowDownStore
  after: number
  delayMs: number
  maxDelayMs: number
  /** A failing store lets the request through at once (fail open); this hears about it. */
  onStoreError: (error: unknown) => void
}

/** The wait before the `n`-th request of a window is handled. */
export function delayFor (n: number, { after, delayMs, maxDelayMs }: Pick<SlowDownOptions, 'after' | 'delayMs' | 'maxDelayMs'>): number {
  return n <= after ? 0 : Math.min((n - after) * delayMs, maxDelayMs)
}

export interface SlowDown {
  /** Counts a request of `key`, then calls `proceed` once its delay (usually none) has passed. */
  admit: (key: string, proceed: () => void) => void
  /** Requests currently waiting. */
  readonly waiting: number
  /**
   * Lets every waiting request proceed now, delays none from then on (shutdown
   * must not wait for the delays), and closes the store.
   */
  close: () => Promise<void>
}

export function createSlowDown (options: SlowDownOptions): SlowDown {
  const { store, onStoreError } = options
  // Timer → its request's continuation; only delayed requests are here, and
  // each leaves when its timer fires, so nothing outlives its request.
  const waiting = new Map<NodeJS.Timeout, () => void>()
  let closed = false

  function proceedAfter (n: number, proceed: () => void): void {
    const ms = closed ? 0 : delayFor(n, options)
    if (ms === 0) return proceed()
    const timer = setTimeout(() => {
      waiting.delete(timer)
      proceed()
    }, ms)
    waiting.set(timer, proceed)
  }

  return {
    admit (key, proceed) {
      if (closed) return proceed()
      let n: number | Promise<number>
      try {
        n = store.hit(key)
      } catch (error) {
        onStoreError(error)
        return proceed()
      }
      if (typeof n === 'number') return proceedAfter(n, proceed)
      n.then((count) => proceedAfter(count, proceed), (error: unknown) => {
        onStoreError(error)
        proceed()
      })
    },

    get waiting () { return waiting.size },

    async close () {
      closed = true
      const released = [...waiting]
      waiting.clear()
      for (const [timer, proceed] of released) {
        clearTimeout(timer)
        proceed()
      }
      await store.close()
    }
  }
}
