import websocket, { type WebsocketPluginOptions } from '@fastify/websocket'
import fp from 'fastify-plugin'
import { Errors, rateLimited } from '../errors.js'
import { errorResponses } from '../schemas/common.js'
import { createChatHub } from '../services/chat/hub.js'
import { redisStreamsFanOut } from '../services/chat/redis-fan-out.js'
import { createOriginPolicy } from '../services/http/origins.js'
import { normalizeIP } from '../services/limits/client-key.js'
import { createKeyedRate } from '../services/limits/keyed-rate.js'
import { createLogSampler } from '../services/logs/log-sampler.js'
import { createFrameMeter } from '../services/chat/frame-meter.js'
import { createWsGateway } from '../services/chat/gateway.js'

/** Longest wait for a peer's answer to our close frame before the socket is cut. */
const MAX_CLOSE_HANDSHAKE_MS = 5000
const CLOSE_INTERNAL_ERROR = 1011

/**
 * The multiplayer chat over WebSocket at GET /ws (SPEC §3): @fastify/websocket
 * with limits from the config, the upgrade checks (Origin, connection caps)
 * made before upgrading, and a close with 1001 for everyone on shutdown.
 * Encapsulated: @fastify/websocket adds an onRequest and an onResponse hook
 * to every route of its context, and only /ws needs them (they were 6 % of
 * GET /api/sessions/:id in a profile).
 * @see https://github.com/fastify/fastify-websocket
 * @see https://github.com/websockets/ws/blob/master/doc/ws.md
 */
export default fp(async (app) => {
  const {
    SESSION_MAX_PARTICIPANTS, WS_MAX_PAYLOAD, WS_PING_INTERVAL_MS, WS_MESSAGE_RATE, WS_MESSAGE_WINDOW_MS,
    WS_MAX_CONNECTIONS, WS_MAX_CONNECTIONS_PER_IP, WS_MAX_BUFFERED_BYTES, SHUTDOWN_TIMEOUT_MS,
    WS_MAX_FRAGMENTS, WS_FRAME_RATE, WS_BYTE_RATE, WS_UPGRADE_RATE, WS_UPGRADE_WINDOW_MS,
    PROTOCOL_ERROR_LOG_MAX, PROTOCOL_ERROR_LOG_WINDOW_MS
  } = app.config
  const { metrics, logFiles: { errors: errorLog } } = app
  const isAllowedOrigin = createOriginPolicy(app.config)

  const upgrades = createKeyedRate({ rate: WS_UPGRADE_RATE, windowMs: WS_UPGRADE_WINDOW_MS })
  const protocolErrorLines = createLogSampler({ max: PROTOCOL_ERROR_LOG_MAX, windowMs: PROTOCOL_ERROR_LOG_WINDOW_MS })

  const { redis } = app
  // With Redis, every instance's members are reached through the fan-out stream (SPEC §9).
  const fanOut = redis === undefined
    ? undefined
    : redisStreamsFanOut({
      connect: redis.connect,
      redis: redis.client,
      store: app.sessions,
      streamKey: app.redisKeys.fanOut,
      maxLength: app.config.REDIS_FANOUT_MAXLEN,
      commandTimeoutMs: app.config.REDIS_COMMAND_TIMEOUT_MS,
      onError: (error) => errorLog.error({ route: '/ws', err: error }, 'fan-out stream read failed'),
      onReplay: (sessions, reason) => app.log.warn({ sessions, reason }, 'fan-out: sessions replayed from their history')
    })
  const hub = createChatHub({ store: app.sessions, maxParticipants: SESSION_MAX_PARTICIPANTS, fanOut })
  const gateway = createWsGateway({
    hub,
    maxConnections: WS_MAX_CONNECTIONS,
    maxConnectionsPerAddress: WS_MAX_CONNECTIONS_PER_IP,
    messageRate: WS_MESSAGE_RATE,
    messageWindowMs: WS_MESSAGE_WINDOW_MS,
    maxBufferedBytes: WS_MAX_BUFFERED_BYTES,
    pingIntervalMs: WS_PING_INTERVAL_MS,
    // A join that would create a session counts against the creation rate.
    admitJoin: async (ip, sessionId) => {
      if ((await app.sessions.get(sessionId))?.kind !== 'multiplayer') app.admitSessionCreation(ip)
    },
    onOpen: () => metrics.connectionOpened(),
    onClose: () => metrics.connectionClosed(),
    onError: (error, { userId, ip }) => {
      const { code } = error as Error & { code?: unknown }
      if (typeof code !== 'string' || !code.startsWith('WS_ERR_')) {
        // Ours: the Error itself, so pino records its real type, message and stack.
        errorLog.error({ route: '/ws', method: 'GET', ip, userId, err: error }, 'websocket failed')
        return
      }
      // ws errors (WS_ERR_*) are the client's doing, already answered with a
      // close code, and repeatable at will: a short line without a stack (flat
      // fields: pino's err serializer would add one), at most
      // PROTOCOL_ERROR_LOG_MAX per address per window.
      const suppressed = protocolErrorLines.admit(ip)
      if (suppressed === undefined) return
      errorLog.warn({
        route: '/ws', method: 'GET', ip, userId, code, errType: error.name, errMessage: error.message, ...(suppressed > 0 ? { suppressed } : {})
      }, 'websocket protocol error')
    }
  })

  const frameMeter = createFrameMeter({
    maxFragments: WS_MAX_FRAGMENTS, frameRate: WS_FRAME_RATE, byteRate: WS_BYTE_RATE, windowMs: WS_MESSAGE_WINDOW_MS
  })

  // `closeTimeout` is a ws ≥ 8.19 option (8.18 waits 30 s) that @types/ws does not list yet.
  const options: WebsocketPluginOptions['options'] & { closeTimeout: number } = {
    maxPayload: WS_MAX_PAYLOAD, // ws's default is 100 MiB
    perMessageDeflate: false, // memory per socket, and decompression bombs
    clientTracking: false, // the gateway keeps its own set
    // A peer that does not answer our close frame (1001, 1008, 1013) is cut
    // well within the shutdown drain, instead of ws's default 30 s.
    closeTimeout: Math.min(MAX_CLOSE_HANDSHAKE_MS, Math.floor(SHUTDOWN_TIMEOUT_MS / 2))
  }

  await app.register(websocket, {
    options,
    // Replaces the plugin's default, which closes without a code (clients
    // would see 1005). Runs before the server stops listening; the server's
    // close then waits for these close handshakes.
    preClose: (done) => {
      gateway.closeAll()
      done()
    },
    // Reached only if accepting a connection throws; socket errors go to the
    // gateway's own listener (see wsHandler).
    errorHandler: (error, socket, request) => {
      errorLog.error({ reqId: request.id, route: '/ws', method: 'GET', ip: request.ip, err: error }, 'websocket failed')
      socket.close(CLOSE_INTERNAL_ERROR, 'internal error')
    }
  })

  app.addHook('onClose', async () => {
    // Waits for the goodbyes of closed connections: the session store (Redis) closes after this.
    await gateway.close()
    await hub.close()
    await upgrades.close()
    await protocolErrorLines.close()
  })

  app.route({
    method: 'GET',
    url: '/ws',
    // Its own limits: the upgrade rate, connection caps, message and frame rates.
    config: { rateLimit: false },
    schema: {
      summary: 'WebSocket upgrade for multiplayer sessions (protocol: README)',
      response: errorResponses(403, 426, 429, 503)
    },
    // Refused before upgrading, with an HTTP status the client can read.
    onRequest: async (request) => {
      const { origin } = request.headers
      if (origin !== undefined && !isAllowedOrigin(origin)) throw new Errors.FORBIDDEN_ORIGIN()
      if (!request.ws) return
      // Keyed like the HTTP rate limits: an IPv6 host owns its whole /64, so
      // rotating addresses in it must not multiply its connection cap.
      const ip = normalizeIP(request.ip)
      if (!upgrades.take(ip)) throw rateLimited(upgrades.retryAfterSeconds)
      const refusal = gateway.refusal(ip)
      if (refusal === 'server') throw new Errors.TOO_MANY_CONNECTIONS()
      if (refusal === 'address') throw new Errors.TOO_MANY_CONNECTIONS_FROM_IP(WS_MAX_CONNECTIONS_PER_IP)
    },
    // The upgraded TCP socket still points at the HTTP response, and
    // @fastify/websocket's error listener closes over the request and reply:
    // together about 3 KB per idle connection. Detach both once upgraded;
    // the gateway attaches its own shared error listener. (HEAD is never
    // upgraded: its 426 still needs the response.)
    preHandler: async (request, reply) => {
      if (request.ws && request.method === 'GET') reply.raw.detachSocket(request.raw.socket)
    },
    handler: async () => {
      throw new Errors.UPGRADE_REQUIRED()
    },
    wsHandler: (socket, request) => {
      frameMeter.attach(request.raw.socket, socket)
      socket.removeAllListeners('error')
      gateway.accept(socket, normalizeIP(request.ip))
    }
  })
}, { name: 'websocket-chat', encapsulate: true, dependencies: ['config', 'logging', 'errors', 'redis', 'sessions', 'metrics'] })
