import type { RecordOptions, RecordResult, SessionEvent, SessionStore } from '../sessions/store.js'

/*
 * How a session's frames reach its members on every instance (SPEC §9), in
 * the shape of a socket.io adapter: the hub hands frames to a FanOut, and
 * every instance's FanOut ends in that instance's `deliverLocal`.
 *
 * - local (this file): one instance; recording and delivery happen in-process.
 * - redis-streams (redis-fan-out.ts): the store's recording script appends
 *   to a Redis stream that every instance reads, in one order for all.
 */

/**
 * Delivers a serialised frame to this instance's members of a session,
 * except one. `seq` (recorded events): a seq already delivered here is
 * dropped, so a replay may overlap what was delivered. A Buffer frame may
 * be a view into a larger one (a Redis reply's): it is copied before it is
 * kept.
 */
export type DeliverLocal = (sessionId: string, frame: string | Buffer, exceptUserId?: string, seq?: number) => void

/** What a fan-out sees of its hub (a socket.io adapter sees its namespace's rooms). */
export interface LocalHub {
  deliverLocal: DeliverLocal
  /** The sessions with members on this instance. */
  sessionIds: () => IterableIterator<string>
  /** The last seq delivered to a session's members here; undefined when it has none here. */
  lastSeq: (sessionId: string) => number | undefined
  /**
   * What the store holds under a local session's id (its createdAt; undefined:
   * nothing): members here of an earlier session under that id are dropped.
   */
  reconcile: (sessionId: string, createdAt: number | undefined) => void
}

export interface FanOut {
  /**
   * Records a message (seq, clientMsgId dedupe) and delivers it to every
   * member of the session on every instance, except `options.exceptUserId`,
   * in seq order. Resolves once recorded; a duplicate is delivered to nobody.
   * Undefined when the session is gone. Rejects (nothing delivered anywhere)
   * when it cannot be recorded.
   */
  record: (sessionId: string, event: SessionEvent, options: RecordOptions) => Promise<RecordResult | undefined>
  /**
   * Resolves once this instance receives every frame fanned out from now on
   * (a reader has found its start); a join waits for it, so nothing sent
   * right after the join can be missed. Rejects (STORE_UNAVAILABLE) when it
   * cannot be reached soon.
   */
  ready: () => Promise<void>
  /** Delivers a frame that is not recorded (presence) to the session's members on every instance. */
  publish: (sessionId: string, frame: string, exceptUserId?: string) => void | Promise<void>
  close: () => Promise<void>
}

/** Builds the fan-out of one hub. */
export type FanOutFactory = (hub: LocalHub) => FanOut

/** One instance: every member is local. */
export function localFanOut (store: SessionStore): FanOutFactory {
  return ({ deliverLocal }) => ({
    async record (sessionId, event, options) {
      const result = await store.recordEvent(sessionId, event, options)
      // The frame as recorded, the same text for every recipient.
      if (result?.duplicate === false) deliverLocal(sessionId, result.frame, options.exceptUserId, result.seq)
      return result
    },
    publish: deliverLocal,
    ready: async () => {},
    async close () {}
  })
}
