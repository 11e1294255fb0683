/*
 * Fixed-window request counters per client, the one count behind the rate
 * limits and the slow-down (SPEC §5). The first hit of a key starts its
 * window; the window ends `windowMs` later, whatever happens in it.
 */

/** A key's window as of its latest hit. */
export interface WindowHit {
  /** This hit's number in the window (1 for the first). */
  readonly count: number
  /** When the window ends (epoch ms). */
  readonly resetAt: number
}

export interface CounterStore {
  /**
   * Counts one hit of `key`. The memory store answers synchronously (no
   * promise, and no allocation but a new window), so a request that is
   * neither refused nor delayed costs nothing asynchronous; a networked store
   * returns a promise, and rejects when it fails.
   */
  hit: (key: string) => WindowHit | Promise<WindowHit>
  close: () => Promise<void>
}

export interface MemoryCounterStoreOptions {
  windowMs: number
  /** Clients tracked at once; past it the window closest to its end is dropped. */
  maxKeys: number
  /** How often ended windows are removed; the request path never scans. */
  sweepIntervalMs?: number
  now?: () => number
}

interface Window { count: number, resetAt: number }

export interface MemoryCounterStore extends CounterStore {
  hit: (key: string) => WindowHit
  /** Removes the ended windows now; returns how many. */
  sweep: () => number
  readonly size: number
}

export function createMemoryCounterStore ({ windowMs, maxKeys, sweepIntervalMs = Math.min(60_000, windowMs), now = Date.now }: MemoryCounterStoreOptions): MemoryCounterStore {
  // Insertion order is window-start order (a new window re-inserts its key),
  // so the first key is always the one whose window ends soonest and a sweep
  // stops at the first live window.
  const windows = new Map<string, Window>()

  function sweep (): number {
    const at = now()
    let removed = 0
    for (const [key, window] of windows) {
      if (at < window.resetAt) break
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
      let window = windows.get(key)
      if (window !== undefined && at < window.resetAt) {
        window.count++
        return window
      }
      if (window !== undefined) windows.delete(key)
      else if (windows.size >= maxKeys) windows.delete(windows.keys().next().value as string)
      window = { count: 1, resetAt: at + windowMs }
      windows.set(key, window)
      return window
    },

    async close () {
      clearInterval(timer)
      windows.clear()
    }
  }
}
