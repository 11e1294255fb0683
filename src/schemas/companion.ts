import { Type } from '@sinclair/typebox'
import { ErrorBody, StringEnum, LINE_CHAR, LINE_RULE, TEXT_CHAR, TEXT_RULE, Timestamp } from './common.js'
import { SessionId } from './sessions.js'

/*
 * SPEC §2.1–2.6. Lengths are Unicode code points (Ajv counts them so) of the
 * NFKC-normalised, trimmed value (the companion routes normalise before
 * validating: NFKC can make one character eighteen). Control characters are
 * refused except tab, CR and LF; a name has no CR/LF either.
 */

const text = (maxLength: number, minLength = 1) =>
  Type.String({ minLength, maxLength, pattern: `^${TEXT_CHAR}*$`, patternMessage: `must be text ${TEXT_RULE}` })

export const CompanionConfig = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 50, pattern: `^${LINE_CHAR}*$`, patternMessage: `must be text ${LINE_RULE}` }),
  personality: text(1000),
  identity: text(1000),
  gender: Type.Optional(text(20, 0)),
  role: text(500)
}, { description: 'The companion\'s persona; unknown fields are ignored' })

export const InitializeBody = Type.Object({ companionConfig: CompanionConfig })

export const ChatBody = Type.Object({
  message: text(2000),
  sessionId: Type.Optional(SessionId),
  companionConfig: Type.Optional(CompanionConfig),
  conversationId: Type.Optional(Type.Unknown({ description: 'Accepted and ignored (sent by the existing frontend)' }))
}, { description: 'sessionId continues a live session; otherwise companionConfig starts a new one' })

export const RegenerateBody = Type.Object({ sessionId: SessionId })

/**
 * SPEC §2.5. `patternProperties` keeps every other header: the server's Ajv
 * removes properties a schema does not mention (removeAdditional: 'all').
 */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9_-]{1,128}$',
    patternMessage: 'must be 1–128 characters of A–Z, a–z, 0–9, _ or -',
    description: 'A repeat with the same key and body gets the first (2xx) response again, with idempotent-replayed: true, and runs nothing'
  }))
}, { patternProperties: { '': {} } })

const replyMeta = {
  companionName: Type.String(),
  timestamp: Timestamp,
  fallback: Type.Boolean({ description: 'true when the text is a fallback (offline mode, withheld reply), not the model\'s' }),
  blocked: Type.Optional(Type.Literal(true, { description: 'Present when a safety filter withheld the reply (or it was empty)' }))
}

export const InitializeResponse = Type.Object({ sessionId: Type.String(), greeting: Type.String(), ...replyMeta })
export const ChatResponse = Type.Object({ sessionId: Type.String(), message: Type.String(), ...replyMeta })

/** SPEC §2.6: the conversation for its user to keep, oldest first, the greeting first. */
export const SessionExport = Type.Object({
  sessionId: Type.String(),
  kind: Type.Literal('companion'),
  companion: Type.Object({
    name: Type.String(),
    personality: Type.String(),
    identity: Type.String(),
    gender: Type.String(),
    role: Type.String()
  }),
  createdAt: Timestamp,
  exportedAt: Timestamp,
  messages: Type.Array(Type.Object({
    role: StringEnum(['user', 'model']),
    text: Type.String(),
    timestamp: Timestamp,
    alternatives: Type.Optional(Type.Array(Type.String(), { description: 'Replies a regenerate replaced, oldest first (at most 4)' }))
  }), { description: 'Every turn the session keeps (the last COMPANION_HISTORY_KEPT)' })
})

/**
 * SPEC §4.5: 503 AI_UNAVAILABLE with the persona-aware fallback the client
 * can show instead. The extra fields are optional in the schema because the
 * same status also carries SHUTTING_DOWN and STORE_UNAVAILABLE bodies.
 */
const unavailableMeta = {
  ...ErrorBody.properties,
  fallback: Type.Optional(Type.Literal(true)),
  retryAfter: Type.Optional(Type.Integer({ minimum: 1, description: 'Seconds; also the Retry-After header' })),
  sessionId: Type.Optional(Type.String())
}
const fallbackText = Type.Optional(Type.String({ description: 'AI_UNAVAILABLE: fallback text in the companion\'s voice' }))

export const InitializeUnavailable = Type.Object({ ...unavailableMeta, greeting: fallbackText })
export const ChatUnavailable = Type.Object({ ...unavailableMeta, message: fallbackText })

/** The Server-Sent Events a streamed chat reply consists of (documentation only: a stream is not serialised). */
export const ChatEventStream = Type.String({
  description: 'event: chunk, data: {"text"} per model chunk; then event: done, data: the JSON response body; ' +
    'or, on a failure after the stream started, event: error, data: {"error","code","message"} (message: the fallback text)'
})
