import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { Errors } from '../../errors.js'
import { COMMAND_TIMEOUT_MS } from '../redis/timing.js'
import type { Session, SessionEvent, SessionStore } from '../sessions/store.js'
import type { FanOutFactory, LocalHub } from './fan-out.js'

/*
 * Fan-out over a Redis stream (SPEC §9). Recording is the store's script,
 * which appends the event to the session's history and to the stream in one
 * step; presence frames are appended by XADD. Every instance reads the
 * stream with a blocking XREAD on its own connection, from the last entry it
 * has seen, and hands each entry to its hub's `deliverLocal`: one order for
 * every instance, and the sender's own instance delivers like any other.
 *
 * After a broken connection the reader resumes from the last id it saw, so
 * nothing is lost or delivered twice. If entries after that id were trimmed
 * meanwhile (it was away longer than the stream keeps), it first replays each
 * of its sessions from the session's history; `deliverLocal` drops any seq
 * it has already delivered, so the replay and the stream may overlap. A
 * connected reader can fall that far behind too (a stalled process): an
 * entry whose seq skips past the last one delivered in its session shows it,
 * and every local session (quiet ones may have lost entries too) is replayed
 * before that entry.
 *
 * Hand-written rather than socket.io's Redis Streams adapter: that one keeps
 * no seq, no per-session replay and is tied to socket.io's packet format.
 */

/** How long one XREAD blocks: the longest a close waits for the reader. */
const BLOCK_MS = 2000
/** Entries read at once. */
const BATCH = 500
/** Wait between attempts while the reader's connection is down (it reconnects by itself). */
const RETRY_MS = 100

export interface RedisFanOutOptions {
  /** Opens the reader's own connection (RedisConnections.connect). */
  connect: (role: string, overrides: { commandTimeout: number }) => Redis
  /** The command connection, for presence XADDs. */
  redis: Redis
  store: SessionStore
  streamKey: string
  /** REDIS_COMMAND_TIMEOUT_MS: the reader's timeout is its block time plus this; a join waits this long for the reader. */
  commandTimeoutMs?: number
  /** About how many entries the stream keeps (REDIS_FANOUT_MAXLEN). */
  maxLength: number
  /** A failure of the reader other than its connection dropping (logged by the caller). */
  onError?: (error: Error) => void
  /** Sessions were replayed from their history (`trimmed`: REDIS_FANOUT_MAXLEN too small for the outage or stall). */
  onReplay?: (sessions: number, reason: ReplayReason) => void
}

/**
 * Why the reader replayed: entries it had not read were trimmed, the stream
 * itself was gone, or Redis restarted (its sessions may be gone, or started
 * anew under the same ids, whatever the stream looks like by now).
 */
export type ReplayReason = 'trimmed' | 'stream-gone' | 'restarted'

/*
 * Read as Buffers (xreadBuffer). ioredis receives every reply as Buffers and
 * for `xread` decodes each to a string; here the frame, most of an entry,
 * reaches the sockets as the bytes Redis sent instead of being decoded and
 * encoded back, and is never decoded where nobody receives it (on the
 * sender's instance). Every instance reads every entry, so this is paid once
 * per instance. In isolation (20,000 entries, 500 per read): 2.2–3.5 against
 * 3.0–5.2 µs per entry, medians of 9 rounds in two runs.
 */
type Entry = [id: Buffer, fields: Buffer[]]
type XReadReply = Array<[stream: Buffer, entries: Entry[]]> | null

/** An entry's field names, by their one byte: s, f, x, q. */
const FIELD = { session: 0x73, frame: 0x66, except: 0x78, seq: 0x71 } as const
const NO_FRAME = Buffer.alloc(0)

/** Stream ids are `<ms>-<n>`; true when `a` comes after `b`. */
function isAfter (a: string, b: string): boolean {
  const [aMs, aN] = a.split('-').map(Number)
  const [bMs, bN] = b.split('-').map(Number)
  return aMs > bMs || (aMs === bMs && aN > bN)
}

/**
 * The Redis server's run id: a new one for every start of the server.
 * Undefined where an ACL refuses INFO (it is in `@dangerous`): restarts are
 * then told only by the stream being gone.
 */
async function runId (reader: Redis): Promise<string | undefined> {
  try {
    return /^run_id:(\w+)/m.exec(await reader.info('server'))?.[1]
  } catch (error) {
    if (/NOPERM/.test((error as Error).message)) return undefined
    throw error
  }
}

/** XINFO STREAM's flat reply as a record; undefined when the stream does not exist (a Redis restarted empty). */
async function streamInfo (reader: Redis, key: string): Promise<Record<string, unknown> | undefined> {
  try {
    const flat = await reader.call('XINFO', 'STREAM', key) as unknown[]
    const info: Record<string, unknown> = {}
    for (let i = 0; i < flat.length; i += 2) info[String(flat[i])] = flat[i + 1]
    return info
  } catch (error) {
    if (/no such key/i.test((error as Error).message)) return undefined
    throw error
  }
}

export function redisStreamsFanOut ({ connect, redis, store, streamKey, maxLength, onError, onReplay, commandTimeoutMs = COMMAND_TIMEOUT_MS }: RedisFanOutOptions): FanOutFactory {
  return (hub: LocalHub) => {
    const reader = connect('fanout', { commandTimeout: BLOCK_MS + commandTimeoutMs })
    /** The last entry delivered; undefined until the reader has started. */
    let lastId: string | undefined
    /** The run id of the Redis server the reader last connected to. */
    let serverRun: string | undefined
    let resumed = false
    const state = { closed: false }
    let markStarted: () => void = () => undefined
    const started = new Promise<void>((resolve) => { markStarted = resolve })

    interface Frame { sessionId: string, frame: Buffer, except: string | undefined, seq: number | undefined }

    function parse ([, fields]: Entry): Frame {
      const parsed: Frame = { sessionId: '', frame: NO_FRAME, except: undefined, seq: undefined }
      for (let i = 0; i < fields.length; i += 2) {
        const value = fields[i + 1]
        switch (fields[i][0]) {
          case FIELD.session: parsed.sessionId = value.toString(); break
          case FIELD.frame: parsed.frame = value; break
          case FIELD.except: parsed.except = value.length === 0 ? undefined : value.toString(); break
          case FIELD.seq: parsed.seq = Number(value.toString()); break
        }
      }
      return parsed
    }

    /** True when entries of the frame's session before it never reached this reader (trimmed first). */
    function skipsSeq ({ sessionId, seq }: Frame): boolean {
      const last = seq === undefined ? undefined : hub.lastSeq(sessionId)
      return last !== undefined && (seq as number) > last + 1
    }

    /**
     * Every local session's kept events, for entries this instance never read.
     * `bestEffort` (the reader is connected and reading): a session that
     * cannot be read now is skipped, the first failure reported, rather than
     * holding up delivery for every session; its members can re-join with
     * `since`. Otherwise a failure fails the replay, which is tried again.
     */
    async function replay (reason: ReplayReason, bestEffort: boolean): Promise<void> {
      let replayed = 0
      let failure: unknown
      for (const sessionId of [...hub.sessionIds()]) {
        let session: Session | undefined
        try {
          session = await store.get(sessionId)
        } catch (error) {
          if (!bestEffort) throw error
          failure ??= error
          continue
        }
        // Gone, or a new session under the same id (a Redis restarted empty): not the one its members here were in.
        hub.reconcile(sessionId, session?.kind === 'multiplayer' ? session.createdAt : undefined)
        if (session?.kind !== 'multiplayer') continue
        replayed++
        for (const frame of session.history) {
          const { event, data } = JSON.parse(frame) as SessionEvent
          // The stream knew whom a chat message skips; the history only knows its sender.
          hub.deliverLocal(sessionId, frame, event === 'chat message' ? data.sender as string : undefined, data.seq as number)
        }
      }
      if (failure !== undefined) onError?.(failure as Error)
      if (replayed > 0) onReplay?.(replayed, reason)
    }

    /**
     * Where to read from: at start the stream's end; after a break, the last
     * id seen, with a replay if entries after it are gone. After a restart of
     * Redis every session is checked and replayed, whatever the stream looks
     * like by now: whichever instance came back first may have written a new
     * one already. A stream that is gone starts again from its beginning;
     * any other goes on after the last id seen (a new stream's ids are later).
     */
    async function prepare (): Promise<string> {
      const [info, run] = await Promise.all([streamInfo(reader, streamKey), runId(reader)])
      if (lastId === undefined) {
        serverRun = run
        return (info?.['last-generated-id'] as string | undefined) ?? '0-0'
      }
      const restarted = run !== undefined && serverRun !== undefined && run !== serverRun
      const deleted = info?.['max-deleted-entry-id'] as string | undefined
      if (restarted) await replay('restarted', false)
      else if (info === undefined) await replay('stream-gone', false)
      else if (deleted !== undefined && isAfter(deleted, lastId)) await replay('trimmed', false)
      // Only once its replay is done: a failed one (the command connection not back yet) is tried again.
      serverRun = run
      return info === undefined ? '0-0' : lastId
    }

    async function run (): Promise<void> {
      while (!state.closed) {
        try {
          if (lastId === undefined || !resumed) {
            lastId = await prepare()
            resumed = true
            markStarted()
          }
          const reply = await reader.xreadBuffer('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', streamKey, lastId) as XReadReply
          for (const entry of reply?.[0][1] ?? []) {
            const frame = parse(entry)
            if (skipsSeq(frame)) await replay('trimmed', true)
            lastId = entry[0].toString()
            hub.deliverLocal(frame.sessionId, frame.frame, frame.except, frame.seq)
          }
          // Emptied once read: after a burst, V8 starts allocating something
          // that points at every reply in its old generation (allocation-site
          // pretenuring), and from there each reply outlived every young-
          // generation collection until the next full one. Measured at 2,000
          // msg/s: about 3 MB promoted and an 8–14 ms pause per scavenge,
          // against 6–12 KB and 2–3 ms with this line (README, Results (§)).
          if (reply !== null) reply.length = 0
        } catch (error) {
          if (state.closed) return
          resumed = false
          // A timed-out read leaves the connection unusable for ordering: start it afresh.
          if (reader.status === 'ready' && /timed out/i.test((error as Error).message)) reader.disconnect(true)
          else if (reader.status === 'ready') onError?.(error as Error)
          await sleep(RETRY_MS)
        }
      }
    }
    const running = run()

    return {
      record: (sessionId, event, options) => store.recordEvent(sessionId, event, options),

      async ready () {
        if (lastId !== undefined) return
        // Redis unreachable since startup: refused like any store operation, within about a second.
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Errors.STORE_UNAVAILABLE()), commandTimeoutMs)
        })
        try {
          await Promise.race([started, late])
        } finally {
          clearTimeout(timer)
        }
      },

      async publish (sessionId, frame, exceptUserId) {
        try {
          await redis.xadd(streamKey, 'MAXLEN', '~', maxLength, '*', 's', sessionId, 'x', exceptUserId ?? '', 'f', frame)
        } catch (error) {
          throw new Errors.STORE_UNAVAILABLE({ cause: error })
        }
      },

      async close () {
        state.closed = true
        reader.disconnect()
        await running
      }
    }
  }
}
