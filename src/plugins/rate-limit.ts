import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { rateLimited } from '../errors.js'
import { createRedisSlowDownStore } from '../services/limits/redis-slow-down-store.js'
import { createMemorySlowDownStore, createSlowDown } from '../services/limits/slow-down.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Also counts against AI_RATE_LIMIT_MAX per AI_RATE_LIMIT_WINDOW_MS (SPEC §5, /api/ai-companion/*). */
    aiRateLimit?: boolean
  }
}

/** Clients tracked per limit at once; past it the least recently seen is forgotten, so memory stays bounded. */
const MAX_TRACKED_CLIENTS = 10_000

/** Adds a route-level onRequest hook without mutating an array the route may share with its HEAD twin. */
function appendOnRequest (route: RouteOptions, hook: onRequestHookHandler): void {
  const existing = route.onRequest
  route.onRequest = existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}

/**
 * Abuse protection (SPEC §5), per client IP (`request.ip`, so TRUST_PROXY decides
 * what the IP is; IPv6 clients are grouped by /64):
 * - secure by default: every route registered after this plugin, and every
 *   unknown URL, counts against RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS and is
 *   slowed down past SLOW_DOWN_AFTER; `config: { rateLimit: false }` (the
 *   plugin's own flag) opts a route out of both, as the health probes do;
 * - `config: { aiRateLimit: true }` adds AI_RATE_LIMIT_MAX per AI_RATE_LIMIT_WINDOW_MS.
 * Routes registered before it (the /docs UI) are not seen and not limited; OPTIONS requests
 * other than approved CORS preflights have no route and count as unknown URLs.
 * Counters live in this instance's memory, or with REDIS_URL in Redis, shared
 * by every instance (@fastify/rate-limit's own Redis store for the limits).
 * A failing counter store lets requests through rather than answering 500,
 * and fails fast: Redis commands never wait for a reconnect.
 * @see https://github.com/fastify/fastify-rate-limit
 */
export default fp(async (app) => {
  const {
    RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_MS, AI_RATE_LIMIT_MAX, AI_RATE_LIMIT_WINDOW_MS,
    SLOW_DOWN_AFTER, SLOW_DOWN_DELAY_MS, SLOW_DOWN_MAX_DELAY_MS
  } = app.config
  const { redis, redisKeys } = app

  await app.register(rateLimit, {
    global: true,
    max: RATE_LIMIT_MAX,
    timeWindow: RATE_LIMIT_WINDOW_MS,
    cache: MAX_TRACKED_CLIENTS,
    ...(redis === undefined ? {} : { redis: redis.client, nameSpace: redisKeys.rateLimit }),
    skipOnError: true,
    enableDraftSpec: true, // ratelimit-limit / -remaining / -reset
    errorResponseBuilder: (_request, { ttl }) => rateLimited(Math.ceil(ttl / 1000))
  })

  // Without options, the hook shares the global limit's counters (for unknown URLs).
  const generalLimit = app.rateLimit()

  // A second limit on the same request cannot be a second `app.rateLimit()` hook:
  // the plugin runs one such hook per request. `createRateLimit` only counts, so
  // the refusal and headers are ours. (`cache` is read by the store, though not typed here.)
  const aiLimitOptions = { max: AI_RATE_LIMIT_MAX, timeWindow: AI_RATE_LIMIT_WINDOW_MS, cache: MAX_TRACKED_CLIENTS }
  const checkAiLimit = app.createRateLimit(aiLimitOptions)

  async function aiRateLimit (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const limit = await checkAiLimit(request)
    if (limit.isAllowed) return
    // Both limits apply here; the headers describe the one closer to refusing.
    const general = reply.getHeader('ratelimit-remaining')
    if (limit.isExceeded || general === undefined || limit.remaining <= Number(general)) {
      reply.header('ratelimit-limit', limit.max)
        .header('ratelimit-remaining', limit.remaining)
        .header('ratelimit-reset', limit.ttlInSeconds)
    }
    if (limit.isExceeded) throw rateLimited(limit.ttlInSeconds)
  }

  // When SLOW_DOWN_AFTER ≥ RATE_LIMIT_MAX the general limit refuses a request
  // before it could be slowed: then there is no slow-down hook at all.
  const slowDown = SLOW_DOWN_DELAY_MS > 0 && SLOW_DOWN_AFTER < RATE_LIMIT_MAX
    ? createSlowDown({
      store: redis === undefined
        ? createMemorySlowDownStore({ windowMs: RATE_LIMIT_WINDOW_MS, maxKeys: MAX_TRACKED_CLIENTS })
        : createRedisSlowDownStore({ redis: redis.client, keys: redisKeys, windowMs: RATE_LIMIT_WINDOW_MS }),
      after: SLOW_DOWN_AFTER,
      delayMs: SLOW_DOWN_DELAY_MS,
      maxDelayMs: SLOW_DOWN_MAX_DELAY_MS,
      // Debug only: during a store outage this would fire on every request, and
      // readiness already reports the store.
      onStoreError: (error) => app.log.debug({ err: error }, 'slow-down store failed; request let through')
    })
    : undefined

  // Same key as the rate limits (IPv6 grouped by /64); a callback hook, so an
  // undelayed request costs no promise.
  const slowDownHook = slowDown === undefined
    ? undefined
    : (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => slowDown.admit(normalizeIP(request.ip), done)

  app.addHook('onRoute', (route) => {
    // Runs after @fastify/rate-limit's own onRoute hook: general limit, then AI limit, then the delay.
    if (route.config?.aiRateLimit === true) appendOnRequest(route, aiRateLimit)
    if (slowDownHook !== undefined && route.config?.rateLimit !== false) appendOnRequest(route, slowDownHook)
  })

  // Unknown URLs have no route to configure: one cheap check on every request
  // (Fastify gives the not-found handler the instance's hooks). No route
  // answers OPTIONS, so a scanner's OPTIONS requests are counted here too;
  // approved CORS preflights are answered earlier, by the security plugin's
  // CORS hook, and so are not counted.
  app.addHook('onRequest', function limitUnknownRoutes (this: FastifyInstance, request, reply, done) {
    if (!request.is404) return done()
    generalLimit.call(this, request, reply).then(
      () => slowDownHook === undefined ? done() : slowDownHook(request, reply, done),
      done
    )
  })

  if (slowDown !== undefined) {
    // Delayed requests are in flight: let them proceed at once rather than hold the drain.
    app.addHook('preClose', async () => slowDown.close())
  }
}, { name: 'rate-limit', dependencies: ['config', 'errors', 'redis'] })
