import { Errors } from '../../errors.js'
import { CLIENT_MSG_ID_TTL_MS, MAX_ALTERNATIVES, newSessionId, type CompanionSession, type MultiplayerSession, type Participant, type Persona, type RequestRecord, type Session, type SessionStore, type StoredTurn } from './store.js'

/*
 * The in-memory session store (the default without REDIS_URL): maps, a TTL
 * sweep and a memory budget with least-recently-active eviction.
 */

export interface MemoryStoreOptions {
  ttlMs: number
  /** The estimated bytes all sessions together may hold before the least recently active are evicted. */
  maxBytes?: number
  /**
   * The estimated bytes the sessions created by one owner (a client address)
   * may hold; past it that owner's own least recently active idle sessions
   * are evicted, so one client cannot push out everyone else's.
   */
  maxBytesPerOwner?: number
  /** Called after a write that evicted sessions: how many, and why (the whole budget, or the writer's owner share). */
  onEvict?: (count: number, reason: EvictionReason) => void
  /** How often expired sessions are removed; the request path never scans. */
  sweepIntervalMs?: number
  /** How long a recorded clientMsgId is remembered (SPEC §3: 10 minutes). */
  clientMsgIdTtlMs?: number
  now?: () => number
}

export type EvictionReason = 'budget' | 'owner'

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

const newRoomBytes = (id: string) => SESSION_OVERHEAD_BYTES + textBytes(id)

/** Refused writes to sessions people are in: their bytes never pass the budget. */
const CAPACITY_MESSAGE = 'The server is at capacity: this message cannot be stored right now'

/** The sessions one owner created, least recently active first, and their bytes. */
interface Owner {
  readonly key: string
  bytes: number
  readonly sessions: Set<Stored>
}

const sum = <T>(items: readonly T[], size: (item: T) => number) => items.reduce((total, item) => total + size(item), 0)

const turnBytes = (turn: StoredTurn) => ENTRY_OVERHEAD_BYTES + textBytes(turn.text) + sum(turn.alternatives ?? [], textBytes)

const participantBytes = (p: Participant) => ENTRY_OVERHEAD_BYTES + textBytes(p.userId) + textBytes(p.playerName)

/** A recorded event, kept as its frame: the JSON's length covers its text fields and their keys. */
const frameBytes = (frame: string) => ENTRY_OVERHEAD_BYTES + textBytes(frame)

/** A clientMsgId remembered by its session: the seq it got and until when it counts. */
interface RecentId { seq: number, until: number }
const recentIdBytes = (clientMsgId: string) => ENTRY_OVERHEAD_BYTES + textBytes(clientMsgId)

/** Forgets the ids whose window has passed (they are in recording order) and returns the bytes freed. */
function forgetExpired (recent: Map<string, RecentId>, at: number): number {
  let freed = 0
  for (const [clientMsgId, { until }] of recent) {
    if (until > at) break
    recent.delete(clientMsgId)
    freed += recentIdBytes(clientMsgId)
  }
  return freed
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
  ttlMs, maxBytes = Number.POSITIVE_INFINITY, maxBytesPerOwner = Number.POSITIVE_INFINITY, onEvict,
  sweepIntervalMs = Math.min(60_000, ttlMs), clientMsgIdTtlMs = CLIENT_MSG_ID_TTL_MS, now = Date.now
}: MemoryStoreOptions): MemorySessionStore {
  const companions = new Map<string, Mutable<CompanionSession>>()
  const multiplayers = new Map<string, Mutable<MultiplayerSession>>()
  /** Each multiplayer session's recent clientMsgIds; gone with the session. */
  const recentIds = new WeakMap<Stored, Map<string, RecentId>>()
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
  const owners = new Map<string, Owner>()
  const ownerOf = new Map<Stored, Owner>()

  const isPinned = (session: Stored) => session.kind === 'multiplayer' && session.participants.length > 0
  const isExpired = (session: Session, at: number) => at - session.lastActivity >= ttlMs
  /** Pinned bytes never pass the budget: growth that would take them past it is refused. */
  const wouldOverfill = (pinning: number) => pinning > 0 && pinnedTotal + pinning > maxBytes

  /** Accounts a new session to the owner that created it (none: not accounted per owner). */
  function own (session: Stored, key: string | undefined): void {
    if (key === undefined) return
    let owner = owners.get(key)
    if (owner === undefined) owners.set(key, owner = { key, bytes: 0, sessions: new Set() })
    owner.sessions.add(session)
    ownerOf.set(session, owner)
  }

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
    const size = unsize(session)
    total -= size
    const owner = ownerOf.get(session)
    if (owner !== undefined) {
      owner.bytes -= size
      owner.sessions.delete(session)
      ownerOf.delete(session)
      if (owner.sessions.size === 0) owners.delete(owner.key)
    }
    if (session.kind === 'companion') companions.delete(session.id)
    else multiplayers.delete(session.id)
  }

  /**
   * Evicts idle sessions from the least recently active end. The rule: idle
   * sessions may hold what the pinned ones leave of the budget, but never
   * less than IDLE_RESERVE of it, so multiplayer pressure cannot evict every
   * companion conversation. While pinned sessions hold less than 75 % of the
   * budget this is simply "keep the total within the budget"; beyond that the
   * total may reach the pinned bytes plus a quarter of the budget; pinned
   * bytes themselves never pass the budget (`wouldOverfill`).
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
    if (evicted > 0) onEvict?.(evicted, 'budget')
  }

  /** Evicts the owner's own idle sessions, least recently active first, until it is within its share. */
  function evictOwn (owner: Owner, writing: Stored): void {
    let evicted = 0
    for (const session of owner.sessions) {
      if (owner.bytes <= maxBytesPerOwner) break
      if (session === writing || pinned.has(session)) continue
      remove(session)
      evicted++
    }
    if (evicted > 0) onEvict?.(evicted, 'owner')
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
    const owner = ownerOf.get(session)
    if (owner !== undefined) {
      owner.bytes += delta
      owner.sessions.delete(session)
      owner.sessions.add(session)
      if (owner.bytes > maxBytesPerOwner) evictOwn(owner, session)
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

    async createCompanion (persona, owner) {
      const at = now()
      const session: Mutable<CompanionSession> = {
        kind: 'companion', id: newSessionId(), persona: { ...persona }, history: [], messageCount: 0, createdAt: at, lastActivity: at
      }
      companions.set(session.id, session)
      own(session, owner)
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

    async join (id, participant, maxParticipants, owner) {
      let session = live(multiplayers, id)
      const already = session?.participants.some((p) => p.userId === participant.userId) === true
      if (session !== undefined && !already && session.participants.length >= maxParticipants) return { ok: false, reason: 'full' }
      const delta = already ? 0 : participantBytes(participant)
      // A first participant pins the whole session: all of its bytes count then.
      const pinning = session === undefined
        ? newRoomBytes(id) + delta
        : isPinned(session) ? delta : (idle.get(session) ?? 0) + delta
      if (wouldOverfill(pinning)) return { ok: false, reason: 'capacity' }
      const created = session === undefined
      if (session === undefined) {
        const at = now()
        session = { kind: 'multiplayer', id, participants: [], history: [], messageCount: 0, createdAt: at, lastActivity: at }
        multiplayers.set(id, session)
        own(session, owner)
        written(session, newRoomBytes(id), at)
      }
      if (!already) session.participants.push({ ...participant })
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

    // Never awaits: a record completes in the call, so concurrent records of
    // one session resolve in seq order and the hub delivers in that order.
    async recordEvent (id, event, { keep, clientMsgId, createdAt }) {
      const session = live(multiplayers, id)
      if (session === undefined || (createdAt !== undefined && session.createdAt !== createdAt)) return undefined
      const at = now()
      let recent = recentIds.get(session)
      const forgotten = recent === undefined ? 0 : forgetExpired(recent, at)
      if (clientMsgId !== undefined) {
        const original = recent?.get(clientMsgId)
        if (original !== undefined) {
          written(session, -forgotten)
          return { duplicate: true, seq: original.seq }
        }
      }
      const seq = session.messageCount + 1
      // Numbered in place, not copied: a copy per message made fan-out ~30 % slower.
      event.data.seq = seq
      const frame = JSON.stringify(event)
      const excess = Math.max(0, session.history.length + 1 - keep)
      const delta = frameBytes(frame) - sum(session.history.slice(0, excess), frameBytes) +
        (clientMsgId === undefined ? 0 : recentIdBytes(clientMsgId)) - forgotten
      // Every write counts: a session people are in cannot grow past the budget either.
      if (isPinned(session) && wouldOverfill(delta)) {
        written(session, -forgotten)
        throw new Errors.SESSION_FULL(CAPACITY_MESSAGE)
      }
      session.messageCount = seq
      session.history.push(frame)
      session.history.splice(0, excess)
      if (clientMsgId !== undefined) {
        if (recent === undefined) recentIds.set(session, recent = new Map())
        recent.set(clientMsgId, { seq, until: at + clientMsgIdTtlMs })
      }
      written(session, delta)
      return { duplicate: false, seq, frame }
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
      owners.clear()
      ownerOf.clear()
      total = 0
      pinnedTotal = 0
    }
  }
}
