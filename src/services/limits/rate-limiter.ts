import { rateLimited } from '../../errors.js'
import type { CounterStore, WindowHit } from './counter-store.js'
import type { SlowDown } from './slow-down.js'

/*
 * The per-request side of abuse protection (SPEC §5): the general rate limit,
 * the AI limit and the slow-down. Hand-written rather than @fastify/rate-limit:
 * - cost: in a CPU profile of GET /api/sessions/:id under wrk the plugin took
 *   about 5 µs of 55 µs per request (an async hook, several promise hops
 *   through its store's callback, an LRU), where SPEC §11 leaves the limit
 *   nearly nothing. Here a request the memory store neither refuses nor
 *   delays costs no promise and allocates nothing;
 * - one count: the slow-down kept a second counter over the same key and
 *   window, so every request was counted twice. Now the limit and the delay
 *   read the same count;
 * - Redis: one script per counter per request, so one round trip where the
 *   plugin and the slow-down made two.
 *
 * The steps are plain functions handed along, not closures, so the synchronous
 * path allocates nothing; only a store that answers with a promise pays for one.
 */

/** Where the limit headers go: a Fastify reply, structurally. */
export interface HeaderSink { header: (name: string, value: number) => unknown }

/** Continues the request, or ends it with the error: a Fastify hook's `done`. */
export type Done = (error?: Error) => void

export interface Limit {
  store: CounterStore
  /** Requests allowed per window; the next is refused with 429. */
  max: number
}

export interface RateLimiterOptions {
  general: Limit
  ai: Limit
  /** Delays requests by their general count; none when it is undefined. */
  slowDown?: SlowDown
  /** A failing store lets the request through (fail open); this hears about it. */
  onStoreError: (error: unknown) => void
  now?: () => number
}

/** What to do once a counter answered; `hit` is undefined when its store failed. */
type Step = (key: string, headers: HeaderSink, done: Done, hit: WindowHit | undefined, general: WindowHit | undefined) => void

export function createRateLimiter ({ general, ai, slowDown, onStoreError, now = Date.now }: RateLimiterOptions) {
  const remaining = (limit: Limit, hit: WindowHit) => Math.max(0, limit.max - hit.count)

  /** Shows `hit` in the headers; refuses the request and returns true when it is over the limit. */
  function enforce (limit: Limit, hit: WindowHit, headers: HeaderSink, done: Done): boolean {
    // At least 1: a window read in its last millisecond has not ended yet.
    const seconds = Math.max(1, Math.ceil((hit.resetAt - now()) / 1000))
    headers.header('ratelimit-limit', limit.max)
    headers.header('ratelimit-remaining', remaining(limit, hit))
    headers.header('ratelimit-reset', seconds)
    if (hit.count <= limit.max) return false
    done(rateLimited(seconds)) // the error handler adds Retry-After
    return true
  }

  function count (limit: Limit, next: Step, key: string, headers: HeaderSink, done: Done, generalHit?: WindowHit): void {
    let hit: WindowHit | Promise<WindowHit>
    try {
      hit = limit.store.hit(key)
    } catch (error) {
      onStoreError(error)
      return next(key, headers, done, undefined, generalHit)
    }
    if (hit instanceof Promise) return countLater(hit, next, key, headers, done, generalHit)
    next(key, headers, done, hit, generalHit)
  }

  function countLater (pending: Promise<WindowHit>, next: Step, key: string, headers: HeaderSink, done: Done, generalHit: WindowHit | undefined): void {
    pending.then(
      (hit) => next(key, headers, done, hit, generalHit),
      (error: unknown) => {
        onStoreError(error)
        next(key, headers, done, undefined, generalHit)
      })
  }

  function delay (generalHit: WindowHit | undefined, done: Done): void {
    if (slowDown === undefined || generalHit === undefined) return done()
    slowDown.proceedAfter(generalHit.count, done)
  }

  const generalOnly: Step = (_key, headers, done, hit) => {
    if (hit === undefined || !enforce(general, hit, headers, done)) done()
  }

  const generalThenDelay: Step = (_key, headers, done, hit) => {
    if (hit === undefined || !enforce(general, hit, headers, done)) delay(hit, done)
  }

  const generalThenAi: Step = (key, headers, done, hit) => {
    if (hit === undefined || !enforce(general, hit, headers, done)) count(ai, aiThenDelay, key, headers, done, hit)
  }

  const aiThenDelay: Step = (_key, headers, done, hit, generalHit) => {
    // Both limits apply; the headers describe the one closer to refusing.
    if (hit !== undefined && (hit.count > ai.max || generalHit === undefined || remaining(ai, hit) <= remaining(general, generalHit))) {
      if (enforce(ai, hit, headers, done)) return
    }
    delay(generalHit, done)
  }

  return {
    /** A request under the general limit: counted, refused past it, else delayed past the slow-down's threshold. */
    admit: (key: string, headers: HeaderSink, done: Done) => count(general, generalThenDelay, key, headers, done),
    /** The same, and also counted against the AI limit (unless the general limit refused it). */
    admitAi: (key: string, headers: HeaderSink, done: Done) => count(general, generalThenAi, key, headers, done),
    /** Counted against the general limit and refused past it, never delayed: for an event that is not itself a limited request. */
    count: (key: string, headers: HeaderSink, done: Done) => count(general, generalOnly, key, headers, done),

    /** Lets delayed requests proceed now (shutdown must not wait for them), delays none after, and closes the stores. */
    async close () {
      slowDown?.close()
      await Promise.all([general.store.close(), ai.store.close()])
    }
  }
}

export type RateLimiter = ReturnType<typeof createRateLimiter>
