import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createMemorySessionStore } from '../services/sessions/memory-store.js'
import { createRedisSessionStore } from '../services/sessions/redis-store.js'
import type { SessionCounts, SessionStore } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
    /** Counts for /health and /api/stats: the last known ones while the store cannot answer (checks.redis says why). */
    sessionCounts: () => Promise<SessionCounts>
  }
}

export interface SessionsPluginOptions {
  /** Used instead of a store of its own; whoever made it closes it. */
  store?: SessionStore
}

/** In this instance's memory, bounded by SESSION_MEMORY_MB, with eviction warned about once. */
function memoryStore (app: FastifyInstance): SessionStore {
  const { SESSION_MEMORY_MB } = app.config
  let warned = false
  return createMemorySessionStore({
    ttlMs: app.config.SESSION_TTL_MS,
    maxBytes: SESSION_MEMORY_MB * 1024 * 1024,
    // Once, not per eviction: under sustained pressure every new session evicts one.
    onEvict: (evicted) => {
      if (warned) return
      warned = true
      app.log.warn({ sessionMemoryMB: SESSION_MEMORY_MB, evicted },
        'session memory budget (SESSION_MEMORY_MB) reached: the least recently active sessions are being evicted before their TTL')
    }
  })
}

/**
 * The session store shared by the companion routes and the WebSocket chat:
 * Redis with REDIS_URL (shared by every instance, SPEC §9), else memory.
 */
export default fp<SessionsPluginOptions>(async (app, options) => {
  const { redis } = app
  const sessions = options.store ?? (redis === undefined
    ? memoryStore(app)
    : createRedisSessionStore({
      redis: redis.client,
      keys: app.redisKeys,
      ttlMs: app.config.SESSION_TTL_MS,
      presenceTtlMs: app.config.REDIS_PRESENCE_TTL_MS,
      fanOutMaxLength: app.config.REDIS_FANOUT_MAXLEN
    }))
  app.decorate('sessions', sessions)
  if (options.store === undefined) app.addHook('onClose', async () => sessions.close())

  let lastCounts: SessionCounts = { companion: 0, multiplayer: 0 }
  app.decorate('sessionCounts', async () => {
    // A probe must not wait for a Redis known to be down.
    if (redis?.state === 'down') return lastCounts
    lastCounts = await sessions.counts().catch(() => lastCounts)
    return lastCounts
  })
}, { name: 'sessions', dependencies: ['config', 'redis'] })
