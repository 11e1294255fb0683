import fp from 'fastify-plugin'
import { createMemorySessionStore } from '../services/sessions/memory-store.js'
import type { SessionStore } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyInstance { sessions: SessionStore }
}

/** The session store shared by the companion routes and the WebSocket chat. */
export default fp(async (app) => {
  if (app.config.REDIS_URL !== undefined) {
    // Honest about the gap rather than silently pretending to share state.
    app.log.warn('REDIS_URL is set but the Redis store is not implemented yet: sessions stay in this instance\'s memory')
  }
  const { SESSION_MEMORY_MB } = app.config
  let warned = false
  const sessions = createMemorySessionStore({
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
  app.decorate('sessions', sessions)
  app.addHook('onClose', async () => sessions.close())
}, { name: 'sessions', dependencies: ['config'] })
