import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Errors, toErrorBody } from '../errors.js'
import { errorResponses } from '../schemas/common.js'
import { SessionExport } from '../schemas/companion.js'
import { SessionInfo, SessionNotFound, SessionParams } from '../schemas/sessions.js'
import { exportConversation } from '../services/companion/export.js'
import { isoTime as iso } from '../services/iso-time.js'
import type { Session } from '../services/sessions/store.js'

/*
 * SPEC §2.3's 404 body. Sent, not thrown, like the not-found handler's: an
 * unknown or expired id is an everyday answer, and a throw (V8 records where
 * it happened) and the error handler's pass were 4 µs of its 59 (SPEC §11).
 */
const SESSION_NOT_FOUND = toErrorBody(new Errors.SESSION_NOT_FOUND())
const notFound = (sessionId: string) =>
  ({ sessionId, isActive: false as const, participantCount: 0 as const, ...SESSION_NOT_FOUND })

/** SPEC §2.3: sessions of both kinds, never their message or persona text. */
const sessions: FastifyPluginAsyncTypebox = async (app) => {
  const { sessions: store } = app
  const ttlMs = app.config.SESSION_TTL_MS

  const describe = (session: Session) => ({
    sessionId: session.id,
    kind: session.kind,
    isActive: true as const,
    ...(session.kind === 'multiplayer'
      ? { participantCount: session.participants.length, participants: session.participants.map((p) => p.playerName) }
      // A companion session has one person in it: the user.
      : { participantCount: 1, companionName: session.persona.name }),
    messageCount: session.messageCount,
    createdAt: iso(session.createdAt),
    lastActivity: iso(session.lastActivity),
    // SPEC §2.3: a multiplayer session does not expire while anyone is connected to it.
    expiresAt: session.kind === 'multiplayer' && session.participants.length > 0 ? null : iso(session.lastActivity + ttlMs)
  })

  app.get('/api/sessions/:id', {
    schema: {
      summary: 'Session information (either kind)',
      params: SessionParams,
      response: { 200: SessionInfo, 404: SessionNotFound, ...errorResponses(400, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const session = await store.get(request.params.id)
    if (session === undefined) return reply.code(404).send(notFound(request.params.id))
    return describe(session)
  })

  app.delete('/api/sessions/:id', {
    schema: {
      summary: 'Erase a companion session and its history now',
      params: SessionParams,
      response: { 204: Type.Null(), 404: SessionNotFound, ...errorResponses(400, 409, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { id } = request.params
    const session = await store.get(id)
    if (session === undefined) return reply.code(404).send(notFound(id))
    // Anyone who knows a multiplayer code may join it; erasing it for everyone is not theirs to do.
    if (session.kind !== 'companion') throw new Errors.SESSION_NOT_DELETABLE()
    await store.delete(id)
    return reply.code(204).send(null)
  })

  // SPEC §2.6. The session id is the credential, as for DELETE; the text is only ever in the response.
  app.get('/api/sessions/:id/export', {
    schema: {
      summary: 'The whole companion conversation, as a JSON file to keep',
      params: SessionParams,
      response: { 200: SessionExport, 404: SessionNotFound, ...errorResponses(400, 409, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { id } = request.params
    const session = await store.get(id)
    if (session === undefined) return reply.code(404).send(notFound(id))
    if (session.kind !== 'companion') throw new Errors.NOT_A_COMPANION_SESSION()
    return reply
      .header('content-disposition', `attachment; filename="lovers-code-${id}.json"`)
      .header('cache-control', 'no-store')
      .send(exportConversation(session))
  })
}

export default sessions
