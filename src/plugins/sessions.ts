import fp from 'fastify-plugin'
import { rateLimited } from '../errors.js'
import { createKeyedRate } from '../services/limits/keyed-rate.js'
import { createMemorySessionStore, type EvictionReason } from '../services/sessions/memory-store.js'
import type { SessionStore } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
    /**
     * Counts one session about to be created by `owner` (a client address
     * key); throws RATE_LIMITED past SESSION_CREATE_RATE per SESSION_CREATE_WINDOW_MS.
     */
    admitSessionCreation: (owner: string) => void
  }
}

const EVICTION_WARNINGS: Record<EvictionReason, string> = {
  budget: 'session memory budget (SESSION_MEMORY_MB) reached: the least recently active sessions are being evicted before their TTL',
  owner: 'one address holds its share of the session memory (SESSION_MEMORY_PER_IP_PCT): its own least recently active sessions are being evicted before their TTL'
}

/** The session store shared by the companion routes and the WebSocket chat, and the per-address session-creation rate. */
export default fp(async (app) => {
  if (app.config.REDIS_URL !== undefined) {
    // Honest about the gap rather than silently pretending to share state.
    app.log.warn('REDIS_URL is set but the Redis store is not implemented yet: sessions stay in this instance\'s memory')
  }
  const { SESSION_MEMORY_MB, SESSION_MEMORY_PER_IP_PCT, SESSION_CREATE_RATE, SESSION_CREATE_WINDOW_MS } = app.config
  const warned = new Set<EvictionReason>()
  const maxBytes = SESSION_MEMORY_MB * 1024 * 1024
  const sessions = createMemorySessionStore({
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
  app.decorate('sessions', sessions)

  const creations = createKeyedRate({ rate: SESSION_CREATE_RATE, windowMs: SESSION_CREATE_WINDOW_MS })
  app.decorate('admitSessionCreation', (owner: string) => {
    if (!creations.take(owner)) throw rateLimited(creations.retryAfterSeconds)
  })

  app.addHook('onClose', async () => {
    await creations.close()
    await sessions.close()
  })
}, { name: 'sessions', dependencies: ['config'] })
