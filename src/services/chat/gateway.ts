import { randomUUID } from 'node:crypto'
import { WebSocket, type RawData } from 'ws'
import { Errors, fieldsOf, isPublicError } from '../../errors.js'
import { DEFAULT_PLAYER_NAME, type ClientData, type ClientEventName } from '../../schemas/ws.js'
import type { ChatHub, Member } from './hub.js'
import { createConnectionCounts, type ConnectionRefusal } from '../limits/connection-counts.js'
import { createMessageRate, RATE_ABUSIVE, RATE_CLOSING, RATE_OK, type RateVerdict, type RateWindow } from './limits.js'
import { encode, frameId, parseFrame } from './protocol.js'

/*
 * The life of WebSocket connections (SPEC §3): admission caps, the
 * per-connection message rate, frame handling in arrival order, the
 * slow-reader limit, the heartbeat and the shutdown close. Independent of
 * Fastify: it is handed an open `ws` socket and the client's address.
 *
 * Built for many idle connections: a connection is one small object whose
 * listeners are shared functions (no closure or timer per socket), and one
 * interval pings every connection.
 */

// Application close codes (RFC 6455 §7.4.1).
const CLOSE_GOING_AWAY = 1001
const CLOSE_POLICY_VIOLATION = 1008
const CLOSE_TRY_AGAIN_LATER = 1013

export interface WsGatewayOptions {
  hub: ChatHub
  maxConnections: number
  maxConnectionsPerAddress: number
  messageRate: number
  messageWindowMs: number
  /** Unsent bytes one connection may hold before it is closed with 1013. */
  maxBufferedBytes: number
  pingIntervalMs: number
  /**
   * Called before a join of a session this connection is not in (it may
   * create one); throws to refuse it, e.g. past the session-creation rate.
   */
  admitJoin?: (ip: string, sessionId: string) => Promise<void>
  onOpen?: () => void
  onClose?: () => void
  /**
   * A socket error (ws has already closed the connection with the code it
   * calls for: 1007, 1009, …) or an unexpected failure while handling a frame.
   */
  onError: (error: Error, context: { userId: string, ip: string }) => void
  now?: () => number
  newUserId?: () => string
}

const kConnection = Symbol('connection')
type TaggedSocket = WebSocket & { [kConnection]: Connection }
interface Connection extends Member, RateWindow {
  readonly socket: WebSocket
  readonly ip: string
  /** Answered the last ping. */
  alive: boolean
  /** Frames start in arrival order: each once this resolves (see RECORDING). */
  ready: Promise<void>
  /** Resolves once every frame started so far is answered (its ack or error sent). */
  tail: Promise<void>
}

const connectionOf = (socket: WebSocket) => (socket as TaggedSocket)[kConnection]

/** History events a re-join sends per message it is counted as. */
const HISTORY_EVENTS_PER_MESSAGE = 10

const TEXT = { binary: false }
const DONE = Promise.resolve()

/**
 * Events that only record (SPEC §3): the next frame starts as soon as this
 * one's store call is made, not once it has returned. Store calls are made
 * in arrival order (each as its handler starts, before any await) and one
 * store connection runs them in that order, so seqs still follow the order
 * a client sent its messages, and answers still go out in that order. Any
 * other frame (a join, a leave) waits for everything before it, and
 * everything after it waits for it. Taking turns, a connection's messages
 * across instances cost a Redis round trip each: 50 senders then recorded
 * at most 50 messages per round trip, with both cores partly idle.
 */
const RECORDING: ReadonlySet<ClientEventName> = new Set(['chat message', 'ask-question', 'question-answer'])

export function createWsGateway (options: WsGatewayOptions) {
  const { hub, maxBufferedBytes, admitJoin, onOpen, onClose, onError, now = Date.now, newUserId = randomUUID } = options
  const counts = createConnectionCounts({ max: options.maxConnections, maxPerAddress: options.maxConnectionsPerAddress })
  const rate = createMessageRate({ rate: options.messageRate, windowMs: options.messageWindowMs, now })
  const connections = new Set<Connection>()
  /** Goodbyes still on their way to the store; `close` waits for them, so they never outlive it. */
  const leaving = new Set<Promise<void>>()
  let closing = false
  /** Set by `close` while it waits for the last connection to finish closing. */
  let allClosed: (() => void) | undefined

  /** Each resolves once the frame's effect is done, with the seq of what it recorded, if anything. */
  const handlers: { [E in ClientEventName]: (connection: Connection, data: ClientData<E>) => Promise<number | void> } = {
    'join-session': async (connection, data) => {
      if (admitJoin !== undefined && connection.joined?.has(data.sessionId) !== true) await admitJoin(connection.ip, data.sessionId)
      const resent = await hub.join(connection, data.sessionId, data.playerName ?? DEFAULT_PLAYER_NAME, data.since)
      // A history asked for again costs its share of the message rate: otherwise one small frame could make the server send 50 events, WS_MESSAGE_RATE times a window.
      if (resent > 0) rate.charge(connection, Math.ceil(resent / HISTORY_EVENTS_PER_MESSAGE))
    },
    'leave-session': (member, data) => hub.leave(member, data.sessionId),
    'chat message': (member, data) => hub.chat(member, data.sessionId, data.text, data.clientMsgId),
    'ask-question': (member, data) => hub.ask(member, data.sessionId, data.question, data.clientMsgId),
    'question-answer': (member, data) => hub.answer(member, data.sessionId, data.question ?? '', data.answer, data.clientMsgId)
  }

  /** Member.deliver: send unless the peer stopped reading; then close instead of buffering. */
  function deliver (this: Connection, frame: Buffer): void {
    const { socket } = this
    if (socket.readyState !== WebSocket.OPEN) return
    // Unsent data already waiting, so one large frame (a history replay) is
    // still sent; memory stays under the limit plus one frame.
    if (socket.bufferedAmount > maxBufferedBytes) {
      socket.close(CLOSE_TRY_AGAIN_LATER, 'too much unsent data: read faster')
      // The close handshake waits behind the unsent data; the others need not.
      leaveAll(this)
      return
    }
    socket.send(frame, TEXT)
  }

  function report (connection: Connection, error: unknown): void {
    onError(error instanceof Error ? error : new Error(String(error)), { userId: connection.userId, ip: connection.ip })
  }

  function sendError (connection: Connection, error: unknown, id: string | undefined): void {
    let coded = error as Error & { code: string }
    if (!isPublicError(coded)) {
      report(connection, error)
      coded = new Errors.INTERNAL_ERROR()
    }
    const data = { message: coded.message, code: coded.code, ...fieldsOf(coded), ...(id === undefined ? {} : { id }) }
    connection.deliver(Buffer.from(encode('error', data)))
  }

  /**
   * Answers a frame once its effect is done and every frame before it is
   * answered: a recorded event is acknowledged only once it is recorded (SPEC §3).
   */
  async function answer (connection: Connection, id: string | undefined, outcome: Promise<number | void>, before: Promise<void>): Promise<void> {
    try {
      const seq = await outcome
      await before
      if (id !== undefined) connection.deliver(Buffer.from(encode('ack', seq === undefined ? { id } : { id, seq })))
    } catch (error) {
      await before
      sendError(connection, error, id)
    }
  }

  /** Starts a frame in its turn; resolves when the next frame may start. */
  function start (connection: Connection, raw: RawData, isBinary: boolean, verdict: RateVerdict): Promise<void> | undefined {
    const before = connection.tail
    let id: string | undefined
    try {
      if (verdict !== RATE_OK) {
        id = frameId(raw, isBinary)
        throw new Errors.RATE_LIMITED(rate.retryAfterSeconds(connection))
      }
      const message = parseFrame(raw, isBinary)
      id = message.id
      const handler = handlers[message.event] as (connection: Connection, data: unknown) => Promise<number | void>
      if (RECORDING.has(message.event)) {
        connection.tail = answer(connection, id, handler(connection, message.data), before)
        return undefined
      }
      const messageId = id
      return (connection.tail = before.then(async () => { await answer(connection, messageId, handler(connection, message.data), DONE) }))
    } catch (error) {
      connection.tail = before.then(() => { sendError(connection, error, id) })
      return undefined
    }
  }

  function leaveAll (connection: Connection): void {
    // After the frames already queued, so a join in flight is undone too.
    // A store that cannot hear the goodbye (STORE_UNAVAILABLE) is expected, not ours to report:
    // presence lapses by itself (SPEC §9).
    const left = connection.ready = connection.ready.then(async () => {
      await connection.tail
      await hub.disconnect(connection)
    }).catch((error: unknown) => {
      if (!isPublicError(error as { code?: unknown })) report(connection, error)
    })
    leaving.add(left)
    left.then(() => leaving.delete(left)).catch(() => undefined)
  }

  function onMessage (this: WebSocket, raw: RawData, isBinary: boolean): void {
    const connection = connectionOf(this)
    if (this.readyState !== WebSocket.OPEN) return
    const verdict = rate.check(connection)
    if (verdict === RATE_CLOSING) return
    // Queued like any frame, so the frames before it are all answered first.
    connection.ready = connection.ready.then(verdict === RATE_ABUSIVE
      ? async () => { await connection.tail; this.close(CLOSE_POLICY_VIOLATION, 'message rate exceeded') }
      : () => start(connection, raw, isBinary, verdict))
  }

  function onSocketError (this: WebSocket, error: Error): void {
    report(connectionOf(this), error)
  }

  function onPong (this: WebSocket): void {
    connectionOf(this).alive = true
  }

  function onSocketClose (this: WebSocket): void {
    const connection = connectionOf(this)
    connections.delete(connection)
    counts.remove(connection.ip)
    onClose?.()
    leaveAll(connection)
    if (connections.size === 0) allClosed?.()
  }

  /** Closes every connection with 1001 and refuses new ones (SPEC §10). */
  function closeAll (): void {
    closing = true
    clearInterval(heartbeat)
    for (const { socket } of connections) socket.close(CLOSE_GOING_AWAY, 'server shutting down')
  }

  // One timer for every connection: a peer that did not answer the previous
  // ping is gone (half-open TCP, sleeping laptop) and is cut.
  const heartbeat = setInterval(() => {
    for (const connection of connections) {
      if (!connection.alive) {
        connection.socket.terminate()
        continue
      }
      connection.alive = false
      connection.socket.ping()
    }
  }, options.pingIntervalMs).unref()

  return {
    /** Why a new connection from `ip` must be refused before upgrading, if it must. */
    refusal (ip: string): ConnectionRefusal | undefined {
      return counts.refusal(ip)
    },

    /** Takes an open socket. Synchronous, so no frame sent right after the handshake is missed. */
    accept (socket: WebSocket, ip: string): void {
      if (closing || counts.refusal(ip) !== undefined) {
        // Shutting down, or several upgrades raced past `refusal` together.
        socket.close(closing ? CLOSE_GOING_AWAY : CLOSE_TRY_AGAIN_LATER, closing ? 'server shutting down' : 'too many connections')
        return
      }
      const connection: Connection = {
        socket, ip, owner: ip, userId: newUserId(), joined: undefined, alive: true, windowStart: 0, count: 0, ready: DONE, tail: DONE, deliver
      }
      const tagged = socket as TaggedSocket
      tagged[kConnection] = connection
      socket.on('message', onMessage)
      socket.on('error', onSocketError)
      socket.on('pong', onPong)
      socket.on('close', onSocketClose)
      connections.add(connection)
      counts.add(ip)
      onOpen?.()
      connection.deliver(Buffer.from(encode('connected', { userId: connection.userId })))
    },

    closeAll,

    /**
     * Closes every connection (if `closeAll` has not), waits for the close
     * handshakes (ws cuts a silent peer after its closeTimeout), then for
     * their goodbyes to reach the store, so none outlives the store or the logs.
     */
    async close (): Promise<void> {
      if (!closing) closeAll()
      if (connections.size > 0) await new Promise<void>((resolve) => { allClosed = resolve })
      await Promise.all(leaving)
    }
  }
}
