/*
 * At most `max` AI requests call upstream at once; up to `maxQueue` more wait
 * at most `maxWaitMs` for a slot, and anything beyond is refused at once.
 * Hand-written: p-limit and p-queue (not dependencies here) have no bound on
 * the wait or the queue, and a bounded wait is the point (SPEC §1).
 */

export class LimiterRejection extends Error {
  constructor (readonly reason: 'QUEUE_FULL' | 'QUEUE_TIMEOUT') {
    super(reason)
    this.name = 'LimiterRejection'
  }
}

export interface LimiterOptions {
  max: number
  maxQueue: number
  maxWaitMs: number
}

interface Waiter {
  grant: () => void
}

export function createConcurrencyLimiter ({ max, maxQueue, maxWaitMs }: LimiterOptions) {
  let active = 0
  const waiting: Waiter[] = []

  function release (): void {
    const next = waiting.shift()
    // The slot passes straight to the next waiter, so `active` is unchanged.
    if (next === undefined) active--
    else next.grant()
  }

  /** Resolves with a release function once a slot is held; rejects when refused, timed out or aborted. */
  function acquire (signal?: AbortSignal): Promise<() => void> {
    if (active < max) {
      active++
      return Promise.resolve(once(release))
    }
    if (waiting.length >= maxQueue) return Promise.reject(new LimiterRejection('QUEUE_FULL'))
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      const leave = (error: unknown) => {
        const index = waiting.indexOf(waiter)
        if (index !== -1) waiting.splice(index, 1)
        cleanup()
        reject(error)
      }
      const timer = setTimeout(() => leave(new LimiterRejection('QUEUE_TIMEOUT')), maxWaitMs)
      const onAbort = () => leave(signal?.reason)
      const cleanup = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const waiter: Waiter = {
        grant: () => {
          cleanup()
          resolve(once(release))
        }
      }
      waiting.push(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  return {
    acquire,
    get active () { return active },
    get waiting () { return waiting.length }
  }
}

function once (fn: () => void): () => void {
  let called = false
  return () => {
    if (!called) {
      called = true
      fn()
    }
  }
}
