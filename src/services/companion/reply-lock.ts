import { randomUUID } from 'node:crypto'
import { Errors, withFields } from '../../errors.js'
import type { SessionStore } from '../sessions/store.js'

/*
 * SPEC §2.5: a companion session generates one reply at a time, on any
 * instance. The lock lives in the session store; its TTL only matters when
 * the instance holding it dies mid-reply.
 */

/**
 * The longest one reply can take (SPEC §4.3): a wait for a concurrency slot
 * and each attempt are bounded by AI_TIMEOUT_MS, and so is each backoff
 * between attempts. Used as the lock's safety TTL.
 */
export const longestReplyMs = ({ AI_TIMEOUT_MS, AI_MAX_ATTEMPTS }: { AI_TIMEOUT_MS: number, AI_MAX_ATTEMPTS: number }) =>
  AI_TIMEOUT_MS * (2 * AI_MAX_ATTEMPTS + 1)

export interface ReplyLockOptions {
  store: SessionStore
  ttlMs: number
  /** A lock that could not be freed (store down) is reported here, not to the client, whose reply is made; it runs out after `ttlMs`. */
  onStoreError: (error: unknown) => void
}

export function createReplyLock ({ store, ttlMs, onStoreError }: ReplyLockOptions) {
  return {
    /** Takes the session's lock or throws 409 SESSION_BUSY; resolves to its release (which may be called more than once). */
    async hold (sessionId: string): Promise<() => Promise<void>> {
      const token = randomUUID()
      if (!await store.lockReply(sessionId, token, ttlMs)) throw withFields(new Errors.SESSION_BUSY(), { retryAfter: 1 })
      let released = false
      return async () => {
        if (released) return
        released = true
        await store.unlockReply(sessionId, token).catch(onStoreError)
      }
    }
  }
}

export type ReplyLock = ReturnType<typeof createReplyLock>
