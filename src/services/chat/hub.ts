import { randomUUID } from 'node:crypto'
import { Errors } from '../../errors.js'
import type { ServerEvents } from '../../schemas/ws.js'
import type { SessionEvent, SessionStore } from '../sessions/store.js'
import { encode } from './protocol.js'

/*
 * Multiplayer sessions (SPEC §3): who is in which session, and fan-out.
 *
 * The store is the truth about a session (participants, history, expiry),
 * shared by every instance once it lives in Redis. The hub only knows which
 * members are connected to THIS instance. Every frame for a session goes
 * through `publish`: by default it is `deliverLocal`; a Redis pub/sub fan-out
 * would publish to a channel instead and call `deliverLocal` from its
 * subscriber on every instance, and nothing else here would change.
 */

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

export type Publish = (sessionId: string, frame: string, exceptUserId?: string) => void

export interface ChatHubOptions {
  store: SessionStore
  maxParticipants: number
  /** Messages, questions and answers kept per session and replayed on join. */
  historySize?: number
  /** Sessions one connection may be in at once (each keeps a session alive). */
  maxSessionsPerMember?: number
  publish?: Publish
  now?: () => number
  newId?: () => string
}

export function createChatHub ({
  store, maxParticipants, historySize = 50, maxSessionsPerMember = 10, publish, now = Date.now, newId = randomUUID
}: ChatHubOptions) {
  const local = new Map<string, Set<Member>>()

  function deliverLocal (sessionId: string, frame: string, exceptUserId?: string): void {
    const members = local.get(sessionId)
    if (members === undefined) return
    const bytes = Buffer.from(frame)
    for (const member of members) {
      if (member.userId !== exceptUserId) member.deliver(bytes)
    }
  }

  const send: Publish = publish ?? deliverLocal

  function nameIn (member: Member, sessionId: string): string {
    const playerName = member.joined?.get(sessionId)
    if (playerName === undefined) throw new Errors.NOT_IN_SESSION(sessionId)
    return playerName
  }

  function removeLocal (member: Member, sessionId: string): void {
    member.joined?.delete(sessionId)
    const members = local.get(sessionId)
    members?.delete(member)
    if (members?.size === 0) local.delete(sessionId)
  }

  /** Records a delivered message in the session's history, then fans it out. */
  async function record (envelope: SessionEvent & { data: { sessionId: string } }, exceptUserId?: string) {
    const { sessionId } = envelope.data
    const kept = await store.appendEvent(sessionId, envelope, historySize)
    if (kept === undefined) throw new Errors.NOT_IN_SESSION(sessionId)
    send(sessionId, JSON.stringify(envelope), exceptUserId)
  }

  async function leave (member: Member, sessionId: string): Promise<void> {
    const playerName = nameIn(member, sessionId)
    // Stop delivering at once; the store call may take a round trip.
    removeLocal(member, sessionId)
    await store.leave(sessionId, member.userId)
    send(sessionId, encode('user-left', { sessionId, userId: member.userId, playerName }))
  }

  return {
    /** Delivers to this instance's members: the end of every fan-out. */
    deliverLocal,

    /**
     * Joins (creating the session if new): the joiner gets `session-joined`
     * with the history, then everyone, joiner included, `user-joined`.
     * Joining a session again only sends `session-joined` again.
     */
    async join (member: Member, sessionId: string, playerName: string): Promise<void> {
      const joined = member.joined ?? (member.joined = new Map())
      const already = joined.get(sessionId)
      if (already === undefined && joined.size >= maxSessionsPerMember) throw new Errors.TOO_MANY_SESSIONS(maxSessionsPerMember)
      const name = already ?? playerName
      const result = await store.join(sessionId, { userId: member.userId, playerName: name }, maxParticipants, member.owner)
      if (!result.ok) throw new Errors.SESSION_FULL(fullMessage(sessionId, maxParticipants, result.reason))
      if (already === undefined) {
        joined.set(sessionId, name)
        let members = local.get(sessionId)
        if (members === undefined) local.set(sessionId, members = new Set())
        members.add(member)
      }
      const { participants, history } = result.session
      member.deliver(Buffer.from(encode('session-joined', { sessionId, userId: member.userId, participants, history })))
      if (already === undefined) send(sessionId, encode('user-joined', { sessionId, userId: member.userId, playerName: name }))
    },

    leave,

    /** Leaves every session (the connection is gone); the others get `user-left`. */
    async disconnect (member: Member): Promise<void> {
      if (member.joined === undefined) return
      for (const sessionId of [...member.joined.keys()]) await leave(member, sessionId)
    },

    /** The others in the session get `chat message`. */
    async chat (member: Member, sessionId: string, text: string): Promise<void> {
      const playerName = nameIn(member, sessionId)
      const timestamp = new Date(now()).toISOString()
      const data: ServerEvents['chat message'] = { sessionId, id: newId(), text, sender: member.userId, playerName, timestamp }
      await record({ event: 'chat message', data }, member.userId)
    },

    /** The others in the session get `question-asked`. */
    async ask (member: Member, sessionId: string, question: string): Promise<void> {
      const playerName = nameIn(member, sessionId)
      const data: ServerEvents['question-asked'] = { sessionId, id: newId(), question, playerName }
      await record({ event: 'question-asked', data }, member.userId)
    },

    /** Everyone in the session, sender included, gets `question-answered`. */
    async answer (member: Member, sessionId: string, question: string, answer: string): Promise<void> {
      const playerName = nameIn(member, sessionId)
      const data: ServerEvents['question-answered'] = { sessionId, id: newId(), question, answer, sender: member.userId, playerName }
      await record({ event: 'question-answered', data })
    },
  }
}

export type ChatHub = ReturnType<typeof createChatHub>
