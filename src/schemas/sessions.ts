import { Type } from '@sinclair/typebox'
import { ErrorBody, Nullable, StringEnum, Timestamp } from './common.js'

/** Ids of both session kinds: server-made companion ids, client-chosen multiplayer codes (SPEC §2.3). */
export const SessionId = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,128}$',
  patternMessage: 'must be 1–128 characters of A–Z, a–z, 0–9, _ or -',
  description: 'Session id: 1–128 of A–Z a–z 0–9 _ -'
})

export const SessionParams = Type.Object({ id: SessionId })

export const SessionInfo = Type.Object({
  sessionId: Type.String(),
  kind: StringEnum(['multiplayer', 'companion']),
  isActive: Type.Literal(true),
  participantCount: Type.Integer({ minimum: 0 }),
  participants: Type.Optional(Type.Array(Type.String(), { description: 'Player names (multiplayer sessions)' })),
  companionName: Type.Optional(Type.String({ description: 'The companion\'s name (companion sessions)' })),
  messageCount: Type.Integer({ minimum: 0 }),
  createdAt: Timestamp,
  lastActivity: Timestamp,
  expiresAt: Nullable(Timestamp, {
    description: 'null for a multiplayer session people are connected to: it does not expire while anyone is'
  })
})

/** SPEC §2.3: the 404 says what an inactive session looks like, plus the usual error fields. */
export const SessionNotFound = Type.Object({
  sessionId: Type.String(),
  isActive: Type.Literal(false),
  participantCount: Type.Literal(0),
  ...ErrorBody.properties
})
