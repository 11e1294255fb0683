import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { Participant, SessionEvent } from '../services/sessions/store.js'
import { LINE_CHAR, LINE_RULE, TEXT_CHAR, TEXT_RULE } from './common.js'

/*
 * The WebSocket protocol of SPEC §3: the client envelope and the data of each
 * client event. Every schema carries a `must` sentence, so an INVALID_MESSAGE
 * names the field and what it must be (as config errors do).
 *
 * Text fields are trimmed before validation (`trim: true`; `clean: true`
 * also NFKC-normalises and strips invisible characters, as for persona
 * fields, so an invisible-only name is empty and refused), then measured in
 * Unicode code points: a `u` regular expression counts code points where
 * maxLength would count UTF-16 units (an emoji is one character, SPEC §2.1).
 * Control characters (Cc) are rejected except tab, CR and LF; single-line
 * fields reject CR and LF too.
 */

const text = (min: number, max: number, singleLine = false, options: { clean?: true } = {}) =>
  Type.RegExp(new RegExp(`^${singleLine ? LINE_CHAR : TEXT_CHAR}{${min},${max}}$`, 'u'), {
    ...options,
    trim: true,
    must: `a string of ${min}–${max} characters ${singleLine ? LINE_RULE : TEXT_RULE}`
  })

const SessionCode = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,64}$',
  must: 'a session code of 1–64 letters, digits, _ or -'
})

export const DEFAULT_PLAYER_NAME = 'Anonymous'

export const ClientEventData = {
  'join-session': Type.Object({
    sessionId: SessionCode,
    // Echoed to everyone in the session: cleaned like persona fields (`clean`).
    playerName: Type.Optional(text(1, 50, true, { clean: true }))
  }),
  'leave-session': Type.Object({
    sessionId: SessionCode
  }),
  'chat message': Type.Object({
    sessionId: SessionCode,
    text: text(1, 2000),
    // Accepted in any form and ignored: the server's clock orders messages.
    timestamp: Type.Optional(Type.Unknown())
  }),
  'ask-question': Type.Object({
    sessionId: SessionCode,
    question: text(1, 1000)
  }),
  'question-answer': Type.Object({
    sessionId: SessionCode,
    question: Type.Optional(text(0, 1000)),
    answer: text(1, 2000)
  })
} satisfies Record<string, TSchema>

export type ClientEventName = keyof typeof ClientEventData
export type ClientData<E extends ClientEventName> = Static<typeof ClientEventData[E]>

export const ClientId = Type.String({ minLength: 1, maxLength: 128, must: 'a string of 1–128 characters' })

/** `{ event, data, id? }`; `data` is checked against the event's own schema. */
export const ClientEnvelope = Type.Object({
  event: Type.String({ must: 'an event name' }),
  data: Type.Object({}, { must: 'an object' }),
  id: Type.Optional(ClientId)
}, { must: 'a JSON object like {"event": "…", "data": {…}}' })

/** What the server sends (SPEC §3); the SessionEvent ones are kept in history. */
export interface ServerEvents {
  connected: { userId: string }
  'session-joined': { sessionId: string, userId: string, participants: readonly Participant[], history: readonly SessionEvent[] }
  'user-joined': { sessionId: string, userId: string, playerName: string }
  'user-left': { sessionId: string, userId: string, playerName: string }
  'chat message': { sessionId: string, id: string, text: string, sender: string, playerName: string, timestamp: string }
  'question-asked': { sessionId: string, id: string, question: string, playerName: string }
  'question-answered': { sessionId: string, id: string, question: string, answer: string, sender: string, playerName: string }
  ack: { id: string }
  error: { message: string, code: string, id?: string }
}
