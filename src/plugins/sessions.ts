import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createMemorySessionStore } from '../services/sessions/memory-store.js'
import type { SessionStore } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyInstance { sessions: SessionStore }
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

/** The session store shared by the companion routes and the WebSocket chat. */
export default fp<SessionsPluginOptions>(async (app, options) => {
  if (app.config.REDIS_URL !== undefined) {
    // Honest about the gap rather than silently pretending to share state.
    app.log.warn('REDIS_URL is set but the Redis store is not implemented yet: sessions stay in this instance\'s memory')
  }
  const sessions = options.store ?? memoryStore(app)
  app.decorate('sessions', sessions)
  if (options.store === undefined) app.addHook('onClose', async () => sessions.close())
}, { name: 'sessions', dependencies: ['config'] })
