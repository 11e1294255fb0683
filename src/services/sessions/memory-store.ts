import { MAX_ALTERNATIVES, newSessionId, type CompanionSession, type MultiplayerSession, type Participant, type Persona, type RequestRecord, type Session, type SessionEvent, type SessionStore, type StoredTurn } from './store.js'

/*
 * The in-memory session store (the default without REDIS_URL): maps, a TTL
 * sweep and a memory budget with least-recently-active eviction.
 */

export interface MemoryStoreOptions {
  ttlMs: number
  /** The estimated bytes all sessions together may hold before the least recently active are evicted. */
  maxBytes?: number
  /** Called after a write that evicted sessions, with how many it evicted. */
  onEvict?: (count: number) => void
  /** How often expired sessions are removed; the request path never scans. */
  sweepIntervalMs?: number
  now?: () => number
}

export type MemorySessionStore = SessionStore & {
  sweep: () => number
  /** The current size estimate of everything stored, in bytes. */
  readonly bytes: number
  /** The part of `bytes` held by multiplayer sessions with people connected. */
  readonly pinnedBytes: number
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer U)[] ? U[] : T[K] }
type Stored = Mutable<Session>

/*
 * Sizes are estimates, not measurements: UTF-16 string lengths (V8 keeps
 * Latin-1 text at one byte a character, so most text is over-counted) plus
 * fixed allowances for the objects, arrays and map entries around them.
 */
const SESSION_OVERHEAD_BYTES = 512
const ENTRY_OVERHEAD_BYTES = 128
/** The share of the budget idle sessions keep however much pinned ones hold (see `evict`). */
const IDLE_RESERVE = 0.25
/**
 * The share of the budget idempotency records may hold besides the sessions;
 * beyond it the oldest are forgotten early (a retry of theirs then runs again).
 */
const REQUEST_RECORDS_SHARE = 0.125

const textBytes = (value: string) => value.length * 2

const sum = <T>(items: readonly T[], size: (item: T) => number) => items.reduce((total, item) => total + size(item), 0)

const turnBytes = (turn: StoredTurn) => ENTRY_OVERHEAD_BYTES + textBytes(turn.text) + sum(turn.alternatives ?? [], textBytes)

const participantBytes = (p: Participant) => ENTRY_OVERHEAD_BYTES + textBytes(p.userId) + textBytes(p.playerName)

/** The text fields of a delivered envelope (the chat hub's are all flat strings). */
function eventBytes (event: SessionEvent): number {
  let bytes = ENTRY_OVERHEAD_BYTES
  for (const key in event.data) {
    const value = event.data[key]
    // Anything but a string is rare here; measure it by its JSON.
    bytes += typeof value === 'string' ? textBytes(value) : (JSON.stringify(value)?.length ?? 0) * 2
  }
  return bytes
}

function personaBytes (persona: Persona): number {
  return textBytes(persona.name) + textBytes(persona.personality) + textBytes(persona.identity) + textBytes(persona.gender) + textBytes(persona.role)
}

/** Keeps the last `keep` items of `list`, in place, and returns the bytes of those dropped. */
function trimTo<T> (list: T[], keep: number, size: (item: T) => number): number {
  const excess = list.length - keep
  if (excess <= 0) return 0
  return sum(list.splice(0, excess), size)
}

export function createMemorySessionStore ({
  ttlMs, maxBytes = Number.POSITIVE_INFINITY, onEvict, sweepIntervalMs = Math.min(60_000, ttlMs), now = Date.now
}: MemoryStoreOptions): MemorySessionStore {
  const companions = new Map<string, Mutable<CompanionSession>>()
  const multiplayers = new Map<string, Mutable<MultiplayerSession>>()
  /*
   * Every session's estimated size, in one of two maps. `idle` holds the
   * sessions that may be evicted (companions, and multiplayer sessions nobody
   * is connected to) in least-recently-active-first order: activity deletes
   * and re-inserts, which is O(1). `pinned` holds multiplayer sessions with
   * people connected; they are never evicted or expired, so they need no order.
   * Keyed by the session object, so a multiplayer code equal to a companion id
   * cannot collide.
   */
  const idle = new Map<Stored, number>()
  const pinned = new Map<Stored, number>()
  // Running sums, so the budget checks are O(1): all sessions, and the pinned ones.
  let total = 0
  let pinnedTotal = 0
  const idleReserve = maxBytes * IDLE_RESERVE

  const isPinned = (session: Stored) => session.kind === 'multiplayer' && session.participants.length > 0
  const isExpired = (session: Session, at: number) => at - session.lastActivity >= ttlMs
  /** Pinning a new session is refused once the pinned ones alone fill the budget. */
  const atCapacity = () => pinnedTotal >= maxBytes

  /** Takes `session` out of both size maps and the pinned sum; returns its size. */
  function unsize (session: Stored): number {
    const pinnedSize = pinned.get(session)
    if (pinnedSize !== undefined) {
      pinned.delete(session)
      pinnedTotal -= pinnedSize
      return pinnedSize
    }
    const idleSize = idle.get(session) ?? 0
    idle.delete(session)
    return idleSize
  }

  function remove (session: Stored): void {
    total -= unsize(session)
    if (session.kind === 'companion') companions.delete(session.id)
    else multiplayers.delete(session.id)
  }

  /**
   * Evicts idle sessions from the least recently active end. The rule: idle
   * sessions may hold what the pinned ones leave of the budget, but never
   * less than IDLE_RESERVE of it, so multiplayer pressure cannot evict every
   * companion conversation. While pinned sessions hold less than 75 % of the
   * budget this is simply "keep the total within the budget"; beyond that the
   * total may reach the pinned bytes plus a quarter of the budget, and
   * pinned bytes stop growing by new sessions at the budget (`atCapacity`).
   * The session being written is skipped, so every write succeeds.
   */
  function evict (writing: Stored): void {
    const idleMax = Math.max(maxBytes - pinnedTotal, idleReserve)
    let evicted = 0
    for (const session of idle.keys()) {
      if (total - pinnedTotal <= idleMax) break
      if (session === writing) continue
      remove(session)
      evicted++
    }
    if (evicted > 0) onEvict?.(evicted)
  }

  /**
   * A write of `delta` bytes is activity: `session` becomes the most recently
   * active (last in `idle`, so `idle` stays in lastActivity order), then the
   * budget is kept.
   */
  function written (session: Stored, delta: number, at = now()): void {
    session.lastActivity = at
    const bytes = unsize(session) + delta
    total += delta
    if (isPinned(session)) {
      pinned.set(session, bytes)
      pinnedTotal += bytes
    } else {
      idle.set(session, bytes)
    }
    if (total > maxBytes) evict(session)
  }

  function live<S extends Stored> (map: Map<string, S>, id: string): S | undefined {
    const session = map.get(id)
    if (session === undefined) return undefined
    // Connected people keep a multiplayer session alive however quiet they are.
    if (!isPinned(session) && isExpired(session, now())) {
      remove(session)
      return undefined
    }
    return session
  }

  /** `idle` is in lastActivity order, so the sweep stops at the first live session. */
  function sweep (): number {
    const at = now()
    let removed = 0
    for (const session of idle.keys()) {
      if (!isExpired(session, at)) break
      remove(session)
      removed++
    }
    return removed
  }

  /*
   * Reply locks and idempotency records (SPEC §2.5), each with its own
   * expiry. Records hold response bodies, so their bytes are bounded too:
   * past their share of the budget the oldest written go first.
   */
  const locks = new Map<string, { token: string, expiresAt: number }>()
  const records = new Map<string, { record: RequestRecord, expiresAt: number, bytes: number }>()
  let recordBytes = 0
  const maxRecordBytes = maxBytes * REQUEST_RECORDS_SHARE

  function forgetRecord (key: string): void {
    recordBytes -= records.get(key)?.bytes ?? 0
    records.delete(key)
  }

  function liveRecord (key: string): RequestRecord | undefined {
    const entry = records.get(key)
    if (entry !== undefined && entry.expiresAt <= now()) forgetRecord(key)
    return records.get(key)?.record
  }

  function putRecord (key: string, record: RequestRecord, ttlMs: number): void {
    forgetRecord(key)
    const bytes = ENTRY_OVERHEAD_BYTES + textBytes(key) + textBytes(record.fingerprint) + (record.state === 'done' ? textBytes(record.response.body) : 0)
    records.set(key, { record, expiresAt: now() + ttlMs, bytes })
    recordBytes += bytes
    for (const oldest of records.keys()) {
      if (recordBytes <= maxRecordBytes) break
      forgetRecord(oldest)
    }
  }

  /** Locks and records have different lifetimes, so none of them is in expiry order: all are checked (off the request path). */
  function sweepControls (): void {
    const at = now()
    for (const [id, lock] of locks) if (lock.expiresAt <= at) locks.delete(id)
    for (const [key, entry] of records) if (entry.expiresAt <= at) forgetRecord(key)
  }

  const timer = setInterval(() => {
    sweep()
    sweepControls()
  }, sweepIntervalMs).unref()

  return {
    sweep,

    get bytes () {
      return total
    },

    get pinnedBytes () {
      return pinnedTotal
    },

    async get (id) {
      return live(companions, id) ?? live(multiplayers, id)
    },

    async createCompanion (persona) {
      const at = now()
      const session: Mutable<CompanionSession> = {
        kind: 'companion', id: newSessionId(), persona: { ...persona }, history: [], messageCount: 0, createdAt: at, lastActivity: at
      }
      companions.set(session.id, session)
      written(session, SESSION_OVERHEAD_BYTES + textBytes(session.id) + personaBytes(persona), at)
      return session
    },

    async appendTurns (id, turns, keep) {
      const session = live(companions, id)
      if (session === undefined) return undefined
      session.history.push(...turns)
      const dropped = trimTo(session.history, keep, turnBytes)
      session.messageCount += turns.length
      written(session, sum(turns, turnBytes) - dropped)
      return session
    },

    async reviseReply (id, reply, keep) {
      const session = live(companions, id)
      if (session === undefined) return undefined
      const last = session.history.at(-1)
      if (last === undefined || last.role === 'user') return this.appendTurns(id, [reply], keep)
      const before = turnBytes(last)
      const alternatives = [...(last.alternatives ?? []), last.text].slice(-MAX_ALTERNATIVES)
      const revised = { ...reply, alternatives }
      session.history[session.history.length - 1] = revised
      written(session, turnBytes(revised) - before)
      return session
    },

    async lockReply (id, token, ttlMs) {
      const held = locks.get(id)
      if (held !== undefined && held.expiresAt > now()) return false
      locks.set(id, { token, expiresAt: now() + ttlMs })
      return true
    },

    async unlockReply (id, token) {
      if (locks.get(id)?.token === token) locks.delete(id)
    },

    async beginRequest (key, fingerprint, ttlMs) {
      const record = liveRecord(key)
      if (record !== undefined && !(record.state === 'failed' && record.fingerprint === fingerprint)) return { claimed: false, record }
      putRecord(key, { state: 'running', fingerprint }, ttlMs)
      return record?.state === 'failed' ? { claimed: true, retrying: record } : { claimed: true }
    },

    async endRequest (key, record, ttlMs) {
      putRecord(key, record, ttlMs)
    },

    async join (id, participant, maxParticipants) {
      let session = live(multiplayers, id)
      // Joining a pinned session only adds a participant; pinning one is what holds memory for good.
      if ((session === undefined || session.participants.length === 0) && atCapacity()) return { ok: false, reason: 'capacity' }
      const created = session === undefined
      if (session === undefined) {
        const at = now()
        session = { kind: 'multiplayer', id, participants: [], history: [], messageCount: 0, createdAt: at, lastActivity: at }
        multiplayers.set(id, session)
        written(session, SESSION_OVERHEAD_BYTES + textBytes(id), at)
      }
      let delta = 0
      const already = session.participants.some((p) => p.userId === participant.userId)
      if (!already) {
        if (session.participants.length >= maxParticipants) return { ok: false, reason: 'full' }
        const joining = { ...participant }
        session.participants.push(joining)
        delta = participantBytes(joining)
      }
      written(session, delta)
      return { ok: true, session, created }
    },

    async leave (id, userId) {
      const session = live(multiplayers, id)
      if (session === undefined) return undefined
      const index = session.participants.findIndex((p) => p.userId === userId)
      const delta = index === -1 ? 0 : -participantBytes(session.participants.splice(index, 1)[0])
      written(session, delta)
      return session
    },

    async appendEvent (id, event, keep) {
      const session = live(multiplayers, id)
      if (session === undefined) return undefined
      session.history.push(event)
      const dropped = trimTo(session.history, keep, eventBytes)
      session.messageCount++
      written(session, eventBytes(event) - dropped)
      return session
    },

    async delete (id) {
      const session = companions.get(id) ?? multiplayers.get(id)
      if (session === undefined) return false
      remove(session)
      return true
    },

    async counts () {
      return { companion: companions.size, multiplayer: multiplayers.size }
    },

    async close () {
      clearInterval(timer)
      locks.clear()
      records.clear()
      recordBytes = 0
      companions.clear()
      multiplayers.clear()
      idle.clear()
      pinned.clear()
      total = 0
      pinnedTotal = 0
    }
  }
}
