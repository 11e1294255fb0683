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

/** What the model is given of a turn. */
export interface ChatTurn {
  role: 'user' | 'model'
  text: string
}

/** A turn as a companion session keeps it (SPEC §2.6). */
export interface StoredTurn extends ChatTurn {
  /** When it was said, in ms since the epoch. */
  timestamp: number
  /** The replies a regenerate replaced (model turns only), oldest first, at most MAX_ALTERNATIVES. */
  alternatives?: string[]
}

/** SPEC §2.4: replaced replies a model turn keeps; older ones are dropped. */
export const MAX_ALTERNATIVES = 4

/** A remembered response of an idempotent request (SPEC §2.5): what the client is sent again. */
export interface StoredResponse {
  statusCode: number
  /** The JSON body, serialised. */
  body: string
}

/**
 * An idempotency record (SPEC §2.5), identified by its key. `fingerprint`
 * identifies the request body. `running`: the first request is still being
 * answered; `done`: it succeeded and this is its response; `failed`: it ended
 * in an error, which is not remembered (a repeat runs again, knowing that an
 * attempt came before).
 */
export type RequestRecord =
  | { state: 'running', fingerprint: string }
  | FailedRequest
  | { state: 'done', fingerprint: string, response: StoredResponse }

/** `sessionId`: the session the failed attempt worked on, which may hold part of its work. */
export interface FailedRequest { state: 'failed', fingerprint: string, sessionId?: string }

/** `claimed`: the caller runs the request (`retrying`: the failed attempt it repeats). Otherwise the record found, unchanged. */
export type RequestClaim =
  | { claimed: true, retrying?: FailedRequest }
  | { claimed: false, record: RequestRecord }

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
  /**
   * The session the sender joined (its createdAt): one started anew under the
   * same id since (it ended, or a Redis restarted empty) records nothing.
   */
  createdAt?: number
}

/**
 * `seq` is the event's number in its session. A duplicate (its clientMsgId
 * was recorded before, within the window) carries the original's `seq` and
 * was not recorded again; otherwise `frame` is the recorded envelope as
 * delivered: its JSON, `data.seq` last.
 */
export type RecordResult =
  | { duplicate: false, seq: number, frame: string }
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
  readonly history: readonly StoredTurn[]
}

export interface MultiplayerSession extends SessionBase {
  readonly kind: 'multiplayer'
  readonly participants: readonly Participant[]
  /**
   * The last recorded events, oldest first, each as its frame (RecordResult
   * `frame`); the newest has `seq` === messageCount. Serialised, as Redis
   * keeps them: a kept event is one string (half the heap of its parsed
   * envelope), and a join or a read parses nothing.
   */
  readonly history: readonly string[]
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
  appendTurns: (id: string, turns: StoredTurn[], keep: number) => Promise<CompanionSession | undefined>
  /**
   * SPEC §2.4: `reply` answers the last user message again. After a user turn
   * it is appended (keeping the last `keep`); otherwise it replaces the last
   * (model) turn, whose text joins that turn's alternatives (the last
   * MAX_ALTERNATIVES). Counts as activity.
   */
  reviseReply: (id: string, reply: StoredTurn, keep: number) => Promise<CompanionSession | undefined>
  /**
   * SPEC §2.5, one reply at a time: takes the session's reply lock under
   * `token` unless another holder has it; it frees itself after `ttlMs` in
   * case its holder dies. True when taken.
   */
  lockReply: (id: string, token: string, ttlMs: number) => Promise<boolean>
  /** Frees the reply lock if `token` still holds it. */
  unlockReply: (id: string, token: string) => Promise<void>
  /**
   * SPEC §2.5: claims `key` for a request with this body `fingerprint` when the
   * key is new, or holds a failed attempt with the same fingerprint; the
   * claim is `running` for `ttlMs` (in case its instance dies). Anything
   * else is returned as found.
   */
  beginRequest: (key: string, fingerprint: string, ttlMs: number) => Promise<RequestClaim>
  /** Ends a claimed request: its record becomes `done` (with the response) or `failed`, kept `ttlMs`. */
  endRequest: (key: string, record: RequestRecord & { state: 'done' | 'failed' }, ttlMs: number) => Promise<void>
  /** Joins (creating the session if new) unless it already has `maxParticipants` others or is over capacity. */
  join: (id: string, participant: Participant, maxParticipants: number, owner?: string) => Promise<JoinResult>
  /** Removes a participant; the (possibly empty) session lives on until its TTL. */
  leave: (id: string, userId: string) => Promise<MultiplayerSession | undefined>
  /**
   * Records a message: assigns the next `seq` (the session's messageCount)
   * and returns the event's frame with it (RecordResult; the caller hands the
   * event over, and the memory store numbers it in place), keeps the last `options.keep`, and counts as activity (throws SESSION_FULL when over capacity) — all at once, so
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
