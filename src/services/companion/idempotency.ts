import { createHash } from 'node:crypto'
import { Errors } from '../../errors.js'
import type { SessionStore, StoredResponse } from '../sessions/store.js'

/*
 * SPEC §2.5: a request sent again with the same Idempotency-Key gets the
 * first response again instead of running twice. The policy is here; the
 * records live in the session store, so in Redis mode every instance sees
 * them. A record is keyed by scope (route and client IP) and key, and
 * remembers a hash of the request body to tell a repeat from a reuse.
 */

export const IDEMPOTENCY_KEY_PATTERN = '^[A-Za-z0-9_-]{1,128}$'

export interface IdempotencyOptions {
  store: SessionStore
  /** How long a finished request's record is kept (IDEMPOTENCY_TTL_MS). */
  ttlMs: number
  /** How long a running claim holds if its instance dies before ending it. */
  runningTtlMs: number
  /**
   * A record that could not be ended (store down) is reported here rather
   * than failing a response that is already made; its claim runs out after
   * `runningTtlMs`.
   */
  onStoreError: (error: unknown) => void
}

/** The caller runs the request and ends it exactly once (later calls are ignored). */
export interface IdempotentRun {
  replay?: undefined
  /** The failed attempt with this key and body that this request repeats; its session may hold part of its work. */
  retrying?: { sessionId?: string }
  /** The session this request works on, once known: a failure remembers it for the retry. */
  sessionId?: string
  /** A 2xx response: remembered and replayed to repeats. */
  succeed: (response: StoredResponse) => Promise<void>
  /** An error: not remembered, a repeat runs again. */
  fail: () => Promise<void>
  readonly ended: boolean
}

export type IdempotentStart = IdempotentRun | { replay: StoredResponse }

/** The body's identity: its JSON, hashed so that a record stays small whatever the body. */
const fingerprintOf = (body: unknown) => createHash('sha256').update(JSON.stringify(body) ?? '').digest('base64url')

export function createIdempotency ({ store, ttlMs, runningTtlMs, onStoreError }: IdempotencyOptions) {
  return {
    /** Claims `key` within `scope`, or answers with the first response; throws REQUEST_IN_PROGRESS or IDEMPOTENCY_KEY_REUSED. */
    async start (scope: string, key: string, body: unknown): Promise<IdempotentStart> {
      const fingerprint = fingerprintOf(body)
      const recordKey = `${scope}:${key}`
      const claim = await store.beginRequest(recordKey, fingerprint, runningTtlMs)
      if (!claim.claimed) {
        const { record } = claim
        if (record.fingerprint !== fingerprint) throw new Errors.IDEMPOTENCY_KEY_REUSED()
        if (record.state === 'done') return { replay: record.response }
        throw new Errors.REQUEST_IN_PROGRESS()
      }
      let ended = false
      const end = async (record: Parameters<SessionStore['endRequest']>[1]) => {
        if (ended) return
        ended = true
        await store.endRequest(recordKey, record, ttlMs).catch(onStoreError)
      }
      const run: IdempotentRun = {
        retrying: claim.retrying === undefined ? undefined : { sessionId: claim.retrying.sessionId },
        succeed: (response) => end({ state: 'done', fingerprint, response }),
        fail: () => end({ state: 'failed', fingerprint, ...(run.sessionId === undefined ? {} : { sessionId: run.sessionId }) }),
        get ended () { return ended }
      }
      return run
    }
  }
}

export type Idempotency = ReturnType<typeof createIdempotency>
