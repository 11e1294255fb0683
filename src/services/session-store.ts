import { randomBytes } from 'node:crypto'

/*
 * Sessions of both kinds behind one asynchronous interface, so that a Redis
 * implementation can replace the in-memory one without touching callers
 * (SPEC §9). Nothing outside this module reaches into its maps.
 */

export interface Persona {
  name: string
  personality: string
  identity: string
  gender: string
  role: string
}

export interface ChatTurn {
  role: 'user' | 'model'
  text: string
}

export interface Participant {
  userId: string
  playerName: string
}

/** A delivered multiplayer message, kept exactly as it was sent (SPEC §3). */
export interface SessionEvent {
  event: 'chat message' | 'question-asked' | 'question-answered'
  data: Record<string, unknown>
}

interface SessionBase {
  readonly id: string
  readonly createdAt: number
  readonly lastActivity: number
  /** Everything ever recorded in the session, not only what is still kept. */
  readonly messageCount: number
}

export interface CompanionSession extends SessionBase {
  readonly kind: 'companion'
  readonly persona: Readonly<Persona>
  readonly history: readonly ChatTurn[]
}

export interface MultiplayerSession extends SessionBase {
  readonly kind: 'multiplayer'
  readonly participants: readonly Participant[]
  readonly history: readonly SessionEvent[]
}

export type Session = CompanionSession | MultiplayerSession

export type JoinResult =
  | { ok: true, session: MultiplayerSession, created: boolean }
  | { ok: false, reason: 'full' }

export interface SessionCounts { companion: number, multiplayer: number }

export interface SessionStore {
  /** A live session of either kind, or undefined when unknown or expired. */
  get: (id: string) => Promise<Session | undefined>
  createCompanion: (persona: Persona) => Promise<CompanionSession>
  /** Appends turns, keeps the last `keep`, and counts as activity. */
  appendTurns: (id: string, turns: ChatTurn[], keep: number) => Promise<CompanionSession | undefined>
  /** Joins (creating the session if new) unless it already has `maxParticipants` others. */
  join: (id: string, participant: Participant, maxParticipants: number) => Promise<JoinResult>
  /** Removes a participant; the (possibly empty) session lives on until its TTL. */
  leave: (id: string, userId: string) => Promise<MultiplayerSession | undefined>
  /** Records a delivered message, keeping the last `keep`. */
  appendEvent: (id: string, event: SessionEvent, keep: number) => Promise<MultiplayerSession | undefined>
  delete: (id: string) => Promise<boolean>
  counts: () => Promise<SessionCounts>
  close: () => Promise<void>
}

/** 16 random bytes = 128 bits (SPEC §2.1 asks for ≥ 122), URL-safe. */
export function newSessionId (): string {
  return randomBytes(16).toString('base64url')
}

export interface MemoryStoreOptions {
  ttlMs: number
  /** How often expired sessions are removed; the request path never scans. */
  sweepIntervalMs?: number
  now?: () => number
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer U)[] ? U[] : T[K] }

/** Keeps the last `keep` items of `list`, in place. */
function trimTo<T> (list: T[], keep: number): void {
  if (list.length > keep) list.splice(0, list.length - keep)
}

export function createMemorySessionStore ({ ttlMs, sweepIntervalMs = Math.min(60_000, ttlMs), now = Date.now }: MemoryStoreOptions): SessionStore & { sweep: () => number } {
  const companions = new Map<string, Mutable<CompanionSession>>()
  const multiplayers = new Map<string, Mutable<MultiplayerSession>>()

  const isExpired = (session: SessionBase, at: number) => at - session.lastActivity >= ttlMs
  // Connected people keep a multiplayer session alive however quiet they are.
  const isRemovable = (session: Mutable<Session>, at: number) =>
    isExpired(session, at) && (session.kind === 'companion' || session.participants.length === 0)

  function live<S extends Mutable<Session>> (map: Map<string, S>, id: string): S | undefined {
    const session = map.get(id)
    if (session === undefined) return undefined
    if (isRemovable(session, now())) {
      map.delete(id)
      return undefined
    }
    return session
  }

  function sweep (): number {
    const at = now()
    let removed = 0
    for (const map of [companions, multiplayers] as Array<Map<string, Mutable<Session>>>) {
      for (const [id, session] of map) {
        if (isRemovable(session, at)) {
          map.delete(id)
          removed++
        }
      }
    }
    return removed
  }

  const timer = setInterval(sweep, sweepIntervalMs).unref()

  return {
    sweep,

    async get (id) {
      return live(companions, id) ?? live(multiplayers, id)
    },

    async createCompanion (persona) {
      const at = now()
      const session: Mutable<CompanionSession> = {
        kind: 'companion', id: newSessionId(), persona: { ...persona }, history: [], messageCount: 0, createdAt: at, lastActivity: at
      }
      companions.set(session.id, session)
      return session
    },

    async appendTurns (id, turns, keep) {
      const session = live(companions, id)
      if (session === undefined) return undefined
      session.history.push(...turns)
      trimTo(session.history, keep)
      session.messageCount += turns.length
      session.lastActivity = now()
      return session
    },

    async join (id, participant, maxParticipants) {
      let session = live(multiplayers, id)
      const created = session === undefined
      if (session === undefined) {
        const at = now()
        session = { kind: 'multiplayer', id, participants: [], history: [], messageCount: 0, createdAt: at, lastActivity: at }
        multiplayers.set(id, session)
      }
      const already = session.participants.some((p) => p.userId === participant.userId)
      if (!already) {
        if (session.participants.length >= maxParticipants) return { ok: false, reason: 'full' }
        session.participants.push({ ...participant })
      }
      session.lastActivity = now()
      return { ok: true, session, created }
    },

    async leave (id, userId) {
      const session = live(multiplayers, id)
      if (session === undefined) return undefined
      const index = session.participants.findIndex((p) => p.userId === userId)
      if (index !== -1) session.participants.splice(index, 1)
      session.lastActivity = now()
      return session
    },

    async appendEvent (id, event, keep) {
      const session = live(multiplayers, id)
      if (session === undefined) return undefined
      session.history.push(event)
      trimTo(session.history, keep)
      session.messageCount++
      session.lastActivity = now()
      return session
    },

    async delete (id) {
      return companions.delete(id) || multiplayers.delete(id)
    },

    async counts () {
      return { companion: companions.size, multiplayer: multiplayers.size }
    },

    async close () {
      clearInterval(timer)
      companions.clear()
      multiplayers.clear()
    }
  }
}
