import DataLoader from 'dataloader'
import type { Redis } from 'ioredis'
import { Errors } from '../../errors.js'
import { COMMAND_TIMEOUT_MS } from '../redis/timing.js'
import type { RedisKeys } from '../redis/keys.js'
import { defineScripts, type ScriptArg } from '../redis/scripts/index.js'
import { companionScripts } from '../redis/scripts/companion.js'
import { sessionScripts } from '../redis/scripts/sessions.js'
import {
  CLIENT_MSG_ID_TTL_MS, MAX_ALTERNATIVES, newSessionId, type CompanionSession, type FailedRequest, type MultiplayerSession, type Participant,
  type RequestRecord, type SessionStore, type StoredTurn
} from './store.js'

/*
 * The shared session store (REDIS_URL, SPEC §9): every instance reads and
 * writes the same sessions. It only translates the SessionStore calls into
 * the atomic scripts of ../redis/scripts/sessions.ts; the key layout is in
 * ../redis/keys.ts. Expiry is Redis' own (a TTL on every key of a session),
 * so there is no sweep and no memory budget here.
 *
 * Presence: a multiplayer session keeps the participants of every instance.
 * Each instance vouches for the members it holds (those it joined and that
 * have not left) by renewing their presence every third of
 * REDIS_PRESENCE_TTL_MS, which also keeps their session's keys alive; the
 * members of an instance that died without a goodbye are dropped by the next
 * script that touches the session once their presence has lapsed. A member
 * dropped while its instance could not vouch (stalled, or cut off from Redis
 * longer than that) but still connected is added back by the next renewal.
 */

export interface RedisStoreOptions {
  redis: Redis
  keys: RedisKeys
  ttlMs: number
  /** A member not vouched for this long is dropped (≤ 60 s, SPEC §9). */
  presenceTtlMs: number
  /** About how many entries the fan-out stream keeps (REDIS_FANOUT_MAXLEN). */
  fanOutMaxLength?: number
  clientMsgIdTtlMs?: number
  /**
   * How long after sending a recording may still take effect (Redis' clock):
   * well within the command timeout, so a recording that Redis runs after
   * its sender was told STORE_UNAVAILABLE never happens.
   */
  recordDeadlineMs?: number
  now?: () => number
}

export type RedisSessionStore = SessionStore & {
  /** Renews the presence of this instance's members (also runs on a timer). */
  refreshPresence: () => Promise<void>
}

type Flat = string[]
type CompanionReply = [meta: Flat, history: Flat]
type RoomReply = [meta: Flat, history: Flat, participants: Flat]

interface Recording {
  id: string
  keep: number
  /** The event's JSON without its last two braces. */
  head: string
  clientMsgId: string | undefined
  exceptUserId: string | undefined
  createdAt: number | undefined
  /** Redis' clock (ms): later, the recording must not happen. */
  deadline: number
}

/** Recordings per script call at most, so that one call holds Redis for 1–1.5 ms at most (15–21 µs each, measured). */
const RECORD_BATCH = 64

function fields (flat: Flat): Record<string, string> {
  const record: Record<string, string> = {}
  for (let i = 0; i < flat.length; i += 2) record[flat[i]] = flat[i + 1]
  return record
}

function base (id: string, meta: Record<string, string>) {
  return { id, createdAt: Number(meta.createdAt), lastActivity: Number(meta.lastActivity), messageCount: Number(meta.messageCount) }
}

function toCompanion (id: string, [meta, history]: CompanionReply): CompanionSession {
  const values = fields(meta)
  return { kind: 'companion', ...base(id, values), persona: JSON.parse(values.persona), history: history.map((turn) => JSON.parse(turn) as StoredTurn) }
}

function toRoom (id: string, [meta, history, participants]: RoomReply): MultiplayerSession {
  const joined: Array<Participant & { order: number }> = []
  for (let i = 0; i < participants.length; i += 2) {
    const [order, playerName] = JSON.parse(participants[i + 1]) as [number, string]
    joined.push({ userId: participants[i], playerName, order })
  }
  joined.sort((a, b) => a.order - b.order)
  return {
    kind: 'multiplayer',
    ...base(id, fields(meta)),
    participants: joined.map(({ userId, playerName }) => ({ userId, playerName })),
    history
  }
}

/** Any Redis failure (down, frozen, restarting) is the client's 503 STORE_UNAVAILABLE. */
async function guarded<T> (operation: Promise<T>): Promise<T> {
  try {
    return await operation
  } catch (error) {
    throw new Errors.STORE_UNAVAILABLE({ cause: error })
  }
}

export function createRedisSessionStore ({
  redis, keys, ttlMs, presenceTtlMs, fanOutMaxLength = 20_000, clientMsgIdTtlMs = CLIENT_MSG_ID_TTL_MS,
  recordDeadlineMs = COMMAND_TIMEOUT_MS / 2, now = Date.now
}: RedisStoreOptions): RedisSessionStore {
  const scripts = defineScripts(redis, 'sessions', sessionScripts)
  const companionOnly = defineScripts(redis, 'companion', companionScripts)

  /** Redis' clock minus ours (ms), measured on every connect: recording deadlines are given in Redis' time. */
  let clockOffset = 0
  async function syncClock (): Promise<void> {
    const before = now()
    const [seconds, micros] = await redis.time()
    clockOffset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + now()) / 2
  }
  const onReady = () => { syncClock().catch(() => undefined) }
  redis.on('ready', onReady)
  if (redis.status === 'ready') onReady()
  /**
   * Room id → the session this instance holds members of (its createdAt: a
   * code's session that ended and was started anew is another one) and those
   * members, user id → the name they joined with.
   */
  const mine = new Map<string, { createdAt: number, members: Map<string, string> }>()

  /** A room's own keys, in the order every script that takes them expects. */
  const ownKeys = ({ meta, history, participants, presence }: ReturnType<RedisKeys['room']>) => [meta, history, participants, presence]
  const roomKeys = (id: string) => [...ownKeys(keys.room(id)), keys.roomIndex]
  const companionKeys = (id: string) => {
    const companion = keys.companion(id)
    return [companion.meta, companion.history, keys.companionIndex]
  }
  /**
   * The recordings of one tick go to Redis in one script call (a group
   * commit), each answered for itself: its seq, -seq for a duplicate, 0 for
   * no such room. Under fan-out load a call per message cost the sending
   * instance about a seventh more CPU per message, and Redis a fifth more
   * time. DataLoader gathers them (without its cache: every call is a write).
   */
  const recorder = new DataLoader(async (recordings: readonly Recording[]): Promise<number[]> => {
    // The batch is late once its earliest deadline has passed.
    const deadline = recordings.reduce((earliest, recording) => Math.min(earliest, recording.deadline), Infinity)
    const keysOf: string[] = [keys.roomIndex, keys.fanOut]
    const args: ScriptArg[] = [now(), ttlMs, deadline, clientMsgIdTtlMs, fanOutMaxLength]
    for (const { id, keep, head, clientMsgId, exceptUserId, createdAt } of recordings) {
      const room = keys.room(id)
      keysOf.push(...ownKeys(room), clientMsgId === undefined ? room.meta : room.clientMsgId(clientMsgId))
      args.push(id, keep, head, clientMsgId ?? '', exceptUserId ?? '', createdAt ?? '')
    }
    const reply = await guarded(scripts.recordEvents(keysOf, args)) as number[] | ['late']
    if (reply[0] === 'late') throw new Errors.STORE_UNAVAILABLE()
    return reply as number[]
  }, { cache: false, maxBatchSize: RECORD_BATCH })

  /** ARGV[1..3] of every write script. */
  const writeArgs = (id: string, ...rest: ScriptArg[]): ScriptArg[] => [id, now(), ttlMs, ...rest]

  async function room (script: 'leave', id: string, ...rest: ScriptArg[]): Promise<MultiplayerSession | undefined> {
    const reply = await guarded(scripts[script](roomKeys(id), writeArgs(id, ...rest)))
    return reply === null ? undefined : toRoom(id, reply as RoomReply)
  }

  function forget (id: string, userId: string): void {
    const held = mine.get(id)
    held?.members.delete(userId)
    if (held?.members.size === 0) mine.delete(id)
  }

  async function refreshPresence (): Promise<void> {
    const at = now()
    const deadline = at + presenceTtlMs
    await Promise.all([...mine].map(async ([id, held]) => {
      const alive = await scripts.refresh(roomKeys(id), [id, at, ttlMs, deadline, held.createdAt, ...[...held.members].flat()])
      // Gone, or started anew (a Redis restarted empty): its members here learn it on their next message.
      if (alive === 0 && mine.get(id) === held) mine.delete(id)
    }))
  }

  // Often enough that neither a member's presence nor its room's keys lapse between two renewals.
  const timer = setInterval(() => { refreshPresence().catch(() => undefined) }, Math.min(presenceTtlMs, ttlMs) / 3).unref()

  return {
    refreshPresence,

    async get (id) {
      const room = keys.room(id)
      const companion = keys.companion(id)
      const reply = await guarded(scripts.get(
        [companion.meta, companion.history, ...ownKeys(room)], [now()]
      )) as ['companion', CompanionReply] | ['room', RoomReply] | null
      if (reply === null) return undefined
      return reply[0] === 'companion' ? toCompanion(id, reply[1]) : toRoom(id, reply[1])
    },

    async createCompanion (persona) {
      const id = newSessionId()
      const at = now()
      const copy = { ...persona }
      const { meta } = keys.companion(id)
      await guarded(scripts.createCompanion([meta, keys.companionIndex], [id, at, ttlMs, JSON.stringify(copy)]))
      return { kind: 'companion', id, persona: copy, history: [], messageCount: 0, createdAt: at, lastActivity: at }
    },

    async appendTurns (id, turns, keep) {
      const reply = await guarded(scripts.appendTurns(companionKeys(id), writeArgs(id, keep, ...turns.map((turn) => JSON.stringify(turn)))))
      return reply === null ? undefined : toCompanion(id, reply as CompanionReply)
    },

    async reviseReply (id, { role, text, timestamp }, keep) {
      const reply = JSON.stringify({ role, text, timestamp })
      const session = await guarded(companionOnly.reviseReply(companionKeys(id), writeArgs(id, keep, reply, MAX_ALTERNATIVES)))
      return session === null ? undefined : toCompanion(id, session as CompanionReply)
    },

    async lockReply (id, token, ttlMs) {
      return await guarded(redis.set(keys.companion(id).replying, token, 'PX', ttlMs, 'NX')) === 'OK'
    },

    async unlockReply (id, token) {
      await guarded(companionOnly.unlockReply([keys.companion(id).replying], [token]))
    },

    async beginRequest (key, fingerprint, ttlMs) {
      const running: RequestRecord = { state: 'running', fingerprint }
      const reply = await guarded(companionOnly.beginRequest([keys.request(key)], [fingerprint, ttlMs, JSON.stringify(running)])) as
        ['claimed' | 'found', string]
      if (reply[0] === 'found') return { claimed: false, record: JSON.parse(reply[1]) as RequestRecord }
      return reply[1] === '' ? { claimed: true } : { claimed: true, retrying: JSON.parse(reply[1]) as FailedRequest }
    },

    async endRequest (key, record, ttlMs) {
      await guarded(redis.set(keys.request(key), JSON.stringify(record), 'PX', ttlMs))
    },

    async join (id, participant, maxParticipants) {
      const { userId, playerName } = participant
      const reply = await guarded(scripts.join(roomKeys(id), writeArgs(id, userId, playerName, maxParticipants, now() + presenceTtlMs))) as
        ['ok', 0 | 1, RoomReply] | ['full']
      if (reply[0] === 'full') return { ok: false, reason: 'full' }
      const session = toRoom(id, reply[2])
      let held = mine.get(id)
      // Members held in a session that ended are not vouched for in the one that replaced it.
      if (held?.createdAt !== session.createdAt) mine.set(id, held = { createdAt: session.createdAt, members: new Map() })
      held.members.set(userId, playerName)
      return { ok: true, session, created: reply[1] === 1 }
    },

    async leave (id, userId) {
      // First: even if Redis cannot hear the goodbye, this instance stops vouching.
      forget(id, userId)
      return room('leave', id, userId)
    },

    async recordEvent (id, event, { keep, clientMsgId, exceptUserId, createdAt }) {
      // The script appends `,"seq":N}}` to the envelope's JSON, which ends with its data object's brace and its own.
      const head = JSON.stringify(event).slice(0, -2)
      const seq = await recorder.load({ id, keep, head, clientMsgId, exceptUserId, createdAt, deadline: now() + clockOffset + recordDeadlineMs })
      if (seq === 0) return undefined
      if (seq < 0) return { duplicate: true, seq: -seq }
      return { duplicate: false, seq, frame: `${head},"seq":${seq}}}` }
    },

    async delete (id) {
      const companion = keys.companion(id)
      const room = keys.room(id)
      const deleted = await guarded(scripts.delete(
        [companion.meta, companion.history, keys.companionIndex, ...ownKeys(room), keys.roomIndex], [id]
      ))
      return deleted === 1
    },

    async counts () {
      const [companion, multiplayer] = await guarded(scripts.counts([keys.companionIndex, keys.roomIndex], [now()])) as [number, number]
      return { companion, multiplayer }
    },

    async close () {
      clearInterval(timer)
      redis.off('ready', onReady)
      mine.clear()
    }
  }
}
