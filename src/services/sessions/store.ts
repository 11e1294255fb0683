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

/**
 * A multiplayer message, kept exactly as it was delivered (SPEC §3). Once
 * recorded, `data.seq` numbers it in its session: 1, 2, 3…
 */
export interface SessionEvent {
  event: 'chat message' | 'question-asked' | 'question-answered'
  data: Record<string, unknown>
}

export interface RecordOptions {
  /** How many recorded events the session keeps. */
  keep: number
  /** The sender's id for this message: recorded once per session within the dedupe window. */
  clientMsgId?: string
  /** Who the fan-out skips (the sender of a `chat message`); a store that fans out itself passes it on. */
  exceptUserId?: string
}

/**
 * `seq` is the event's number in its session. A duplicate (its clientMsgId
 * was recorded before, within the window) carries the original's `seq` and
 * was not recorded again; otherwise `event` is the recorded envelope, with
 * `data.seq`.
 */
export type RecordResult =
  | { duplicate: false, seq: number, event: SessionEvent }
  | { duplicate: true, seq: number }

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
  /** The last recorded events, oldest first; the newest has `seq` === messageCount. */
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

export interface SessionStore {
  /** A live session of either kind, or undefined when unknown or expired. */
  get: (id: string) => Promise<Session | undefined>
  createCompanion: (persona: Persona) => Promise<CompanionSession>
  /** Appends turns, keeps the last `keep`, and counts as activity. */
  appendTurns: (id: string, turns: ChatTurn[], keep: number) => Promise<CompanionSession | undefined>
  /** Joins (creating the session if new) unless it already has `maxParticipants` others or is over capacity. */
  join: (id: string, participant: Participant, maxParticipants: number) => Promise<JoinResult>
  /** Removes a participant; the (possibly empty) session lives on until its TTL. */
  leave: (id: string, userId: string) => Promise<MultiplayerSession | undefined>
  /**
   * Records a message: assigns the next `seq` (the session's messageCount,
   * set as `event.data.seq`: the caller hands the event over),
   * keeps the last `options.keep`, and counts as activity — all at once, so
   * concurrent writers get consecutive numbers. Undefined when the session is
   * gone. A store shared by instances also appends it to the fan-out stream
   * in the same step (SPEC §9).
   */
  recordEvent: (id: string, event: SessionEvent, options: RecordOptions) => Promise<RecordResult | undefined>
  delete: (id: string) => Promise<boolean>
  counts: () => Promise<SessionCounts>
  close: () => Promise<void>
}

/** How long a clientMsgId is remembered (SPEC §3). */
export const CLIENT_MSG_ID_TTL_MS = 10 * 60_000

/** 16 random bytes = 128 bits (SPEC §2.1 asks for ≥ 122), URL-safe. */
export function newSessionId (): string {
  return randomBytes(16).toString('base64url')
}
