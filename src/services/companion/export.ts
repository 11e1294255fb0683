import { isoTime as iso } from '../iso-time.js'
import type { CompanionSession } from '../sessions/store.js'

/*
 * SPEC §2.6: a companion conversation as its user takes it home. Model
 * turns that were regenerated carry the replies they replaced.
 */

export function exportConversation (session: CompanionSession, now = Date.now()) {
  return {
    sessionId: session.id,
    kind: 'companion' as const,
    companion: { ...session.persona },
    createdAt: iso(session.createdAt),
    exportedAt: iso(now),
    messages: session.history.map(({ role, text, timestamp, alternatives }) =>
      ({ role, text, timestamp: iso(timestamp), ...(alternatives === undefined ? {} : { alternatives: [...alternatives] }) }))
  }
}
