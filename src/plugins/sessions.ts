import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { rateLimited } from '../errors.js'
import { createKeyedRate } from '../services/limits/keyed-rate.js'
import { createMemorySessionStore, type EvictionReason } from '../services/sessions/memory-store.js'
import { createRedisSessionStore } from '../services/sessions/redis-store.js'
import type { SessionCounts, SessionStore } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
    /** Counts for /health and /api/stats: the last known ones while the store cannot answer (checks.redis says why). */
    sessionCounts: () => Promise<SessionCounts>
    /**
     * Counts one session about to be created by `owner` (a client address
     * key); throws RATE_LIMITED past SESSION_CREATE_RATE per SESSION_CREATE_WINDOW_MS.
     */
    admitSessionCreation: (owner: string) => void
  }
}

export interface SessionsPluginOptions {
  /** Used instead of a store of its own; whoever made it closes it. */
  store?: SessionStore
}

const EVICTION_WARNINGS: Record<EvictionReason, string> = {
  budget: 'session memory budget (SESSION_MEMORY_MB) reached: the least recently active sessions are being evicted before their TTL',
  owner: 'one address holds its share of the session memory (SESSION_MEMORY_PER_IP_PCT): its own least recently active sessions are being evicted before their TTL'
}

/** In this instance's memory, bounded by SESSION_MEMORY_MB (and a share of it per address), with eviction warned about once per reason. */
function memoryStore (app: FastifyInstance): SessionStore {
  const { SESSION_MEMORY_MB, SESSION_MEMORY_PER_IP_PCT } = app.config
  const warned = new Set<EvictionReason>()
  const maxBytes = SESSION_MEMORY_MB * 1024 * 1024
  return createMemorySessionStore({
    ttlMs: app.config.SESSION_TTL_MS,
    maxBytes,
    maxBytesPerOwner: maxBytes * SESSION_MEMORY_PER_IP_PCT / 100,
    // Once per reason, not per eviction: under sustained pressure every new session evicts one.
    onEvict: (evicted, reason) => {
      if (warned.has(reason)) return
      warned.add(reason)
      app.log.warn({ sessionMemoryMB: SESSION_MEMORY_MB, evicted }, EVICTION_WARNINGS[reason])
    }
  })
}

/**
 * The session store shared by the companion routes and the WebSocket chat:
 * Redis with REDIS_URL (shared by every instance, SPEC §9), else memory;
 * and the per-address session-creation rate.
 */
export default fp<SessionsPluginOptions>(async (app, options) => {
  const { redis } = app
  const { SESSION_CREATE_RATE, SESSION_CREATE_WINDOW_MS } = app.config
  const sessions = options.store ?? (redis === undefined
    ? memoryStore(app)
    : createRedisSessionStore({
      redis: redis.client,
      keys: app.redisKeys,
      ttlMs: app.config.SESSION_TTL_MS,
      presenceTtlMs: app.config.REDIS_PRESENCE_TTL_MS,
      fanOutMaxLength: app.config.REDIS_FANOUT_MAXLEN,
      // Well inside the command timeout: a write answered as refused must never land later (SPEC §9).
      recordDeadlineMs: app.config.REDIS_COMMAND_TIMEOUT_MS / 2
    }))
  app.decorate('sessions', sessions)

  let lastCounts: SessionCounts = { companion: 0, multiplayer: 0 }
  app.decorate('sessionCounts', async () => {
    // A probe must not wait for a Redis known to be down.
    if (redis?.state === 'down') return lastCounts
    lastCounts = await sessions.counts().catch(() => lastCounts)
    return lastCounts
  })

  const creations = createKeyedRate({ rate: SESSION_CREATE_RATE, windowMs: SESSION_CREATE_WINDOW_MS })
  app.decorate('admitSessionCreation', (owner: string) => {
    if (!creations.take(owner)) throw rateLimited(creations.retryAfterSeconds)
  })

  app.addHook('onClose', async () => {
    await creations.close()
    if (options.store === undefined) await sessions.close()
  })
}, { name: 'sessions', dependencies: ['config', 'redis'] })
