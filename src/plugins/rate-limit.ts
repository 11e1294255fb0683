import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { normalizeIP } from '../services/limits/client-key.js'
import { createMemoryCounterStore, type CounterStore } from '../services/limits/counter-store.js'
import { createRateLimiter, type Done } from '../services/limits/rate-limiter.js'
import { createRedisCounterStore } from '../services/limits/redis-counter-store.js'
import { createSlowDown } from '../services/limits/slow-down.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: neither counted, limited nor slowed down (health probes, scrapes, the WebSocket upgrade). */
    rateLimit?: false
    /** Also counts against AI_RATE_LIMIT_MAX per AI_RATE_LIMIT_WINDOW_MS (SPEC §5, /api/ai-companion/*). */
    aiRateLimit?: boolean
  }
  interface FastifyInstance {
    /**
     * Counts `request` against the general limit and refuses it (429) once
     * the budget is spent, without delaying it: for a route that is not
     * limited itself but counts some requests (a wrong STATS_TOKEN guess).
     */
    countRequest: (request: FastifyRequest, reply: FastifyReply, done: Done) => void
  }
}

/** Clients tracked per limit at once; past it the window closest to its end is forgotten, so memory stays bounded. */
const MAX_TRACKED_CLIENTS = 10_000

/** Adds a route-level onRequest hook without mutating an array the route may share with its HEAD twin. */
function appendOnRequest (route: RouteOptions, hook: onRequestHookHandler): void {
  const existing = route.onRequest
  route.onRequest = existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}

/**
 * Abuse protection (SPEC §5), per client IP (`request.ip`, so TRUST_PROXY decides
 * what the IP is; IPv6 clients are grouped by /64), by services/limits/rate-limiter.ts:
 * - secure by default: every route registered after this plugin, and every
 *   unknown URL, counts against RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS and is
 *   slowed down past SLOW_DOWN_AFTER (the same count); `config: { rateLimit: false }`
 *   opts a route out of both, as the health probes do;
 * - `config: { aiRateLimit: true }` adds AI_RATE_LIMIT_MAX per AI_RATE_LIMIT_WINDOW_MS.
 * Routes registered before it (the /docs UI) are not seen and not limited; OPTIONS requests
 * other than approved CORS preflights have no route and count as unknown URLs.
 * Counters live in this instance's memory, or with REDIS_URL in Redis, shared
 * by every instance. A failing counter store lets requests through rather
 * than answering 500, and fails fast: Redis commands never wait for a reconnect.
 */
export default fp(async (app) => {
  const {
    RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_MS, AI_RATE_LIMIT_MAX, AI_RATE_LIMIT_WINDOW_MS,
    SLOW_DOWN_AFTER, SLOW_DOWN_DELAY_MS, SLOW_DOWN_MAX_DELAY_MS
  } = app.config
  const { redis, redisKeys } = app

  const store = (windowMs: number, keyOf: (client: string) => string): CounterStore => redis === undefined
    ? createMemoryCounterStore({ windowMs, maxKeys: MAX_TRACKED_CLIENTS })
    : createRedisCounterStore({ redis: redis.client, keyOf, windowMs })

  const limiter = createRateLimiter({
    general: { store: store(RATE_LIMIT_WINDOW_MS, redisKeys.rateLimit), max: RATE_LIMIT_MAX },
    ai: { store: store(AI_RATE_LIMIT_WINDOW_MS, redisKeys.aiRateLimit), max: AI_RATE_LIMIT_MAX },
    // When SLOW_DOWN_AFTER ≥ RATE_LIMIT_MAX the general limit refuses a request
    // before it could be slowed: then nothing is ever delayed.
    slowDown: SLOW_DOWN_DELAY_MS > 0 && SLOW_DOWN_AFTER < RATE_LIMIT_MAX
      ? createSlowDown({ after: SLOW_DOWN_AFTER, delayMs: SLOW_DOWN_DELAY_MS, maxDelayMs: SLOW_DOWN_MAX_DELAY_MS })
      : undefined,
    // Debug only: during a store outage this would fire on every request, and
    // readiness already reports the store.
    onStoreError: (error) => app.log.debug({ err: error }, 'rate-limit store failed; request let through')
  })

  // Callback hooks: with the memory store, a request neither refused nor
  // delayed costs no promise.
  const limit = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) =>
    limiter.admit(normalizeIP(request.ip), reply, done)
  const limitAi = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) =>
    limiter.admitAi(normalizeIP(request.ip), reply, done)

  app.decorate('countRequest', (request: FastifyRequest, reply: FastifyReply, done: Done) =>
    limiter.count(normalizeIP(request.ip), reply, done))

  app.addHook('onRoute', (route) => {
    if (route.config?.rateLimit === false) return
    appendOnRequest(route, route.config?.aiRateLimit === true ? limitAi : limit)
  })

  // Unknown URLs have no route to configure: one cheap check on every request
  // (Fastify gives the not-found handler the instance's hooks). No route
  // answers OPTIONS, so a scanner's OPTIONS requests are counted here too;
  // approved CORS preflights are answered earlier, by the security plugin's
  // CORS hook, and so are not counted.
  app.addHook('onRequest', function limitUnknownRoutes (request, reply, done) {
    if (!request.is404) return done()
    limit(request, reply, done)
  })

  // Delayed requests are in flight: let them proceed at once rather than hold the drain.
  app.addHook('preClose', async () => limiter.close())
}, { name: 'rate-limit', dependencies: ['config', 'errors', 'redis'] })
