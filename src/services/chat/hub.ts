import { randomUUID } from 'node:crypto'
import { Errors } from '../../errors.js'
import type { ServerEvents } from '../../schemas/ws.js'
import type { JoinResult, MultiplayerSession, SessionEvent, SessionStore } from '../sessions/store.js'
import { isoTime } from '../iso-time.js'
import { localFanOut, type FanOutFactory } from './fan-out.js'
import { encode, encodeSessionJoined } from './protocol.js'

/*
 * Multiplayer sessions (SPEC §3): who is in which session, and fan-out.
 *
 * The store is the truth about a session (participants, history, seq,
 * expiry), shared by every instance once it lives in Redis. The hub only
 * knows which members are connected to THIS instance. Every frame for a
 * session goes through the fan-out (fan-out.ts): in one instance it is
 * `deliverLocal`; across instances a Redis stream that every instance reads
 * and hands to its own `deliverLocal`. Nothing else here changes.
 */

/** A session's members on this instance. */
interface LocalSession {
  /**
   * Which session this is. Its id is a code people share: once a session
   * has ended (a Redis restarted empty), a join starts a new one under the
   * same id, whose seqs start again at 1.
   */
  readonly createdAt: number
  /**
   * Each member, and the last seq its join's history had: a frame still on
   * its way to this instance (a reader a little behind) that the history
   * already held is not delivered to that member again.
   */
  readonly members: Map<Member, number>
  /** The last seq delivered here: frames at or below it are not delivered again. */
  lastSeq: number
}

/** A frame held for a member whose join is under way; `delivered`: it reached the member already (a re-join). */
interface Held { seq: number | undefined, bytes: Buffer, delivered: boolean }

/** A connected client, as the hub sees it (the WebSocket stays outside). */
export interface Member {
  readonly userId: string
  /** Whom the sessions this member creates are accounted to (the client's address key). */
  readonly owner?: string
  /** Session id → the name given at join. Kept by the hub; absent until a first join. */
  joined?: Map<string, string>
  /** Queues one serialised envelope for this member; never throws. */
  deliver: (frame: Buffer) => void
}

/** Why a join was refused (a store over its memory budget is SESSION_FULL too). */
const fullMessage = (sessionId: string, maxParticipants: number, reason: 'full' | 'capacity') => reason === 'full'
  ? `Session ${sessionId} already has ${maxParticipants} participants`
  : 'The server is at capacity: no new sessions can be joined right now'

/**
 * The history a join sends (SPEC §3): without `since` the last kept events;
 * with it those after `since`, and whether some of those are no longer kept.
 * History is contiguous and ends at seq === messageCount, so no scan is
 * needed. A `since` past the session's last seq comes from an earlier
 * session under the same code (expired, then joined anew): it counts as 0.
 */
export function historySince ({ history, messageCount }: MultiplayerSession, since: number | undefined) {
  if (since === undefined) return { history }
  const from = since > messageCount ? 0 : since
  const wanted = messageCount - from
  return wanted > history.length
    ? { history, historyTruncated: true }
    : { history: history.slice(history.length - wanted) }
}

export interface ChatHubOptions {
  store: SessionStore
  maxParticipants: number
  /** Messages, questions and answers kept per session and replayed on join. */
  historySize?: number
  /** Sessions one connection may be in at once (each keeps a session alive). */
  maxSessionsPerMember?: number
  /** How frames reach members on every instance; local (one instance) by default. */
  fanOut?: FanOutFactory
  now?: () => number
  newId?: () => string
}

export function createChatHub ({
  store, maxParticipants, historySize = 50, maxSessionsPerMember = 10, fanOut: makeFanOut = localFanOut(store), now = Date.now, newId = randomUUID
}: ChatHubOptions) {
  /** This instance's members of each session, and the last seq delivered to them. */
  const local = new Map<string, LocalSession>()
  /**
   * Members whose join is waiting for the store. Across instances, frames of
   * the session may reach this instance before the join's answer does (or
   * after, though already in the history it returns): they are held here and
   * sorted out by seq once the join is answered (see `admit`). Usually empty.
   */
  const joining = new Map<string, Map<Member, Held[]>>()

  /** The end of every fan-out; `seq` for recorded events, which are delivered once each, in order. */
  function deliverLocal (sessionId: string, frame: string | Buffer, exceptUserId?: string, seq?: number): void {
    const session = local.get(sessionId)
    const waiting = joining.size === 0 ? undefined : joining.get(sessionId)
    if (session === undefined && waiting === undefined) return
    // Not fresh: already delivered here (a replay from history overlapping the stream).
    const fresh = seq === undefined || session === undefined || seq > session.lastSeq
    if (seq !== undefined && session !== undefined && fresh) session.lastSeq = seq
    // Encoded (or copied) once, and only for a recipient: across instances the sender's own instance reads its frames too.
    let bytes: Buffer | undefined
    if (session !== undefined && fresh) {
      for (const [member, joinedAt] of session.members) {
        if (member.userId !== exceptUserId && (seq === undefined || seq > joinedAt)) member.deliver(bytes ??= Buffer.from(frame))
      }
    }
    if (waiting !== undefined) {
      // Held whether fresh or not: the join may find a new session under this id (see `admit`).
      for (const [member, held] of waiting) {
        if (member.userId === exceptUserId) continue
        const joinedAt = fresh ? session?.members.get(member) : undefined
        held.push({ seq, bytes: bytes ??= Buffer.from(frame), delivered: joinedAt !== undefined && (seq === undefined || seq > joinedAt) })
      }
    }
  }

  /**
   * The session these members were in has ended (gone from the store, or
   * replaced by a new one under its id): they are in it no more, and learn it
   * from NOT_IN_SESSION on their next event (SPEC §9), or by joining again.
   */
  function endLocal (sessionId: string): void {
    const session = local.get(sessionId)
    if (session === undefined) return
    for (const member of session.members.keys()) member.joined?.delete(sessionId)
    local.delete(sessionId)
  }

  /** The store holds this session under the id (its createdAt; undefined: none): a local one that is not it has ended. */
  function reconcile (sessionId: string, createdAt: number | undefined): void {
    if (local.get(sessionId)?.createdAt !== createdAt) endLocal(sessionId)
  }

  const fanOut = makeFanOut({ deliverLocal, sessionIds: () => local.keys(), lastSeq: (sessionId) => local.get(sessionId)?.lastSeq, reconcile })

  /**
   * Makes a joined member local: it gets what was held for it that its
   * history (up to `joinedAt`) did not have and it did not get already, each
   * seq once (a replay may have overlapped the stream while it waited).
   */
  function admit (member: Member, sessionId: string, { createdAt, messageCount: joinedAt }: MultiplayerSession, held: readonly Held[]): void {
    let session = local.get(sessionId)
    if (session === undefined) local.set(sessionId, session = { createdAt, members: new Map(), lastSeq: joinedAt })
    session.members.set(member, joinedAt)
    let last = joinedAt
    for (const { seq, bytes, delivered } of held) {
      if (seq !== undefined) {
        if (seq <= last) continue
        last = seq
        if (seq > session.lastSeq) session.lastSeq = seq
      }
      if (!delivered) member.deliver(bytes)
    }
  }

  function nameIn (member: Member, sessionId: string): string {
    const playerName = member.joined?.get(sessionId)
    if (playerName === undefined) throw new Errors.NOT_IN_SESSION(sessionId)
    return playerName
  }

  function removeLocal (member: Member, sessionId: string): void {
    member.joined?.delete(sessionId)
    const session = local.get(sessionId)
    session?.members.delete(member)
    if (session?.members.size === 0) local.delete(sessionId)
  }

  async function joinStore (member: Member, sessionId: string, playerName: string): Promise<{ result: JoinResult, held: Held[] }> {
    let waiting = joining.get(sessionId)
    if (waiting === undefined) joining.set(sessionId, waiting = new Map())
    const held: Held[] = []
    waiting.set(member, held)
    try {
      return { result: await store.join(sessionId, { userId: member.userId, playerName }, maxParticipants, member.owner), held }
    } finally {
      waiting.delete(member)
      if (waiting.size === 0) joining.delete(sessionId)
    }
  }

  /** Records a message (or finds its earlier copy by clientMsgId) and fans it out; returns its seq. */
  async function record (envelope: SessionEvent & { data: { sessionId: string } }, clientMsgId: string | undefined, exceptUserId?: string) {
    const { sessionId } = envelope.data
    const createdAt = local.get(sessionId)?.createdAt
    const result = await fanOut.record(sessionId, envelope, { keep: historySize, clientMsgId, exceptUserId, createdAt })
    if (result === undefined) {
      endLocal(sessionId)
      throw new Errors.NOT_IN_SESSION(sessionId)
    }
    return result.seq
  }

  async function leave (member: Member, sessionId: string): Promise<void> {
    const playerName = nameIn(member, sessionId)
    // Stop delivering at once; the store call may take a round trip.
    removeLocal(member, sessionId)
    await store.leave(sessionId, member.userId)
    await fanOut.publish(sessionId, encode('user-left', { sessionId, userId: member.userId, playerName }), member.userId)
  }

  return {
    /** Delivers to this instance's members: the end of every fan-out. */
    deliverLocal,

    /**
     * Joins (creating the session if new): the joiner gets `session-joined`
     * with the history (see historySince), then everyone, joiner included,
     * `user-joined`. Joining a session again only sends `session-joined`
     * again, with no history unless asked for by `since`: a re-join must not
     * be a cheap way to make the server send the whole history (issue 15).
     * Returns how many history events a re-join sent (0 for a first join),
     * for the caller to count against the connection's budget.
     */
    async join (member: Member, sessionId: string, playerName: string, since?: number): Promise<number> {
      const joined = member.joined ?? (member.joined = new Map())
      const already = joined.get(sessionId)
      if (already === undefined && joined.size >= maxSessionsPerMember) throw new Errors.TOO_MANY_SESSIONS(maxSessionsPerMember)
      const name = already ?? playerName
      if (already === undefined) await fanOut.ready()
      const { result, held } = await joinStore(member, sessionId, name)
      if (!result.ok) throw new Errors.SESSION_FULL(fullMessage(sessionId, maxParticipants, result.reason))
      reconcile(sessionId, result.session.createdAt)
      // Asked after the wait: an ended session (here, by another join, or by the reader) makes it a first join.
      const first = !joined.has(sessionId)
      const { history, ...truncated } = first || since !== undefined ? historySince(result.session, since) : { history: [] }
      member.deliver(Buffer.from(encodeSessionJoined({ sessionId, userId: member.userId, participants: result.session.participants, ...truncated }, history)))
      if (!first) return history.length
      joined.set(sessionId, name)
      admit(member, sessionId, result.session, held)
      await fanOut.publish(sessionId, encode('user-joined', { sessionId, userId: member.userId, playerName: name }))
      return 0
    },

    leave,

    /**
     * Leaves every session (the connection is gone); the others get
     * `user-left`. All at once: each leave stops delivering and vouching
     * before its store call, so one goodbye Redis cannot hear (a blip) does
     * not leave the member's other sessions held, and renewed, for ever.
     * Rejects with the first failure once every leave has been tried.
     */
    async disconnect (member: Member): Promise<void> {
      if (member.joined === undefined) return
      const left = await Promise.allSettled([...member.joined.keys()].map((sessionId) => leave(member, sessionId)))
      const failed = left.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
      if (failed !== undefined) throw failed.reason
    },

    /** The others in the session get `chat message`; returns its seq. */
    async chat (member: Member, sessionId: string, text: string, clientMsgId?: string): Promise<number> {
      const playerName = nameIn(member, sessionId)
      const timestamp = isoTime(now())
      const data: Omit<ServerEvents['chat message'], 'seq'> = { sessionId, id: newId(), text, sender: member.userId, playerName, timestamp }
      return await record({ event: 'chat message', data }, clientMsgId, member.userId)
    },

    /** The others in the session get `question-asked`; returns its seq. */
    async ask (member: Member, sessionId: string, question: string, clientMsgId?: string): Promise<number> {
      const playerName = nameIn(member, sessionId)
      const data: Omit<ServerEvents['question-asked'], 'seq'> = { sessionId, id: newId(), question, playerName }
      return await record({ event: 'question-asked', data }, clientMsgId, member.userId)
    },

    /** Everyone in the session, sender included, gets `question-answered`; returns its seq. */
    async answer (member: Member, sessionId: string, question: string, answer: string, clientMsgId?: string): Promise<number> {
      const playerName = nameIn(member, sessionId)
      const data: Omit<ServerEvents['question-answered'], 'seq'> = { sessionId, id: newId(), question, answer, sender: member.userId, playerName }
      return await record({ event: 'question-answered', data }, clientMsgId)
    },

    close: () => fanOut.close()
  }
}

export type ChatHub = ReturnType<typeof createChatHub>
