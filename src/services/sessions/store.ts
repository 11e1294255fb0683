import { randomBytes } from 'node:crypto'

/*
 * Sessions of both kinds behind one asynchronous interface, so that a Redis
 * implementation can replace the in-memory one without touching callers
 * (SPEC §9): memory-store.ts is the default, the Redis store the shared one.
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

/**
 * `full`: the session already has `maxParticipants` people. `capacity`: the
 * sessions people are connected to already hold the whole memory budget, so
 * no session may gain its first participant (a new one included).
 */
export type JoinResult =
  | { ok: true, session: MultiplayerSession, created: boolean }
  | { ok: false, reason: 'full' | 'capacity' }

export interface SessionCounts { companion: number, multiplayer: number }

/**
 * `owner`: who created a session (the client's address key), so a store with
 * a memory budget can keep one client from filling it (memory-store.ts).
 */
export interface SessionStore {
  /** A live session of either kind, or undefined when unknown or expired. */
  get: (id: string) => Promise<Session | undefined>
  createCompanion: (persona: Persona, owner?: string) => Promise<CompanionSession>
  /** Appends turns, keeps the last `keep`, and counts as activity. */
  appendTurns: (id: string, turns: ChatTurn[], keep: number) => Promise<CompanionSession | undefined>
  /** Joins (creating the session if new) unless it already has `maxParticipants` others or is over capacity. */
  join: (id: string, participant: Participant, maxParticipants: number, owner?: string) => Promise<JoinResult>
  /** Removes a participant; the (possibly empty) session lives on until its TTL. */
  leave: (id: string, userId: string) => Promise<MultiplayerSession | undefined>
  /** Records a delivered message, keeping the last `keep`; throws SESSION_FULL when over capacity. */
  appendEvent: (id: string, event: SessionEvent, keep: number) => Promise<MultiplayerSession | undefined>
  delete: (id: string) => Promise<boolean>
  counts: () => Promise<SessionCounts>
  close: () => Promise<void>
}

/** 16 random bytes = 128 bits (SPEC §2.1 asks for ≥ 122), URL-safe. */
export function newSessionId (): string {
  return randomBytes(16).toString('base64url')
}
