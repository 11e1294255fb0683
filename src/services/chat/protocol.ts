import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { ValueErrorType } from '@sinclair/typebox/errors'
import type { TSchema } from '@sinclair/typebox'
import sjson from 'secure-json-parse'
import type { RawData } from 'ws'
import { Errors, withFields } from '../../errors.js'
import { cleanVisibleText } from '../visible-text.js'
import { ClientEnvelope, ClientEventData, ClientId, type ClientData, type ClientEventName, type ServerEvents } from '../../schemas/ws.js'

/*
 * Frames in and out (SPEC §3). Incoming frames are parsed with the same
 * prototype-poisoning protection as HTTP bodies and checked by schemas
 * compiled once at startup; outgoing envelopes are serialised once, whoever
 * receives them.
 */

export type ClientMessage = {
  [E in ClientEventName]: { event: E, data: ClientData<E>, id?: string }
}[ClientEventName]

interface EventCheck {
  check: TypeCheck<TSchema>
  /** Text fields, trimmed (or cleaned) before they are measured (SPEC §2.1). */
  trimmed: Array<[key: string, prepare: (value: string) => string]>
}

const trim = (value: string) => value.trim()

const envelopeCheck = TypeCompiler.Compile(ClientEnvelope)
const eventChecks = new Map<string, EventCheck>(Object.entries(ClientEventData).map(([event, schema]) => [event, {
  check: TypeCompiler.Compile(schema),
  trimmed: Object.entries(schema.properties)
    .filter(([, property]) => property.trim === true)
    .map(([key, property]) => [key, property.clean === true ? cleanVisibleText : trim])
}]))
const EVENT_NAMES = [...eventChecks.keys()].join(', ')

// Same options Fastify gets for bodies (server-options.ts): reject, never strip.
const PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const

/**
 * Parses and validates one frame. Throws a coded error (INVALID_JSON,
 * INVALID_MESSAGE, UNKNOWN_EVENT) carrying the frame's `id` when it had a
 * usable one, so the error can answer that frame.
 */
export function parseFrame (raw: RawData, isBinary: boolean): ClientMessage {
  if (isBinary) throw new Errors.INVALID_MESSAGE('Binary frames are not accepted: send JSON text frames')
  let value: unknown
  try {
    // The server keeps ws's default binaryType, so a frame is one Buffer.
    value = sjson.parse(raw as Buffer, PARSE_OPTIONS)
  } catch (error) {
    throw /prototype/.test((error as Error).message)
      ? new Errors.INVALID_MESSAGE('The message contains a forbidden __proto__ or constructor.prototype key')
      : new Errors.INVALID_JSON('The message is not valid JSON')
  }
  try {
    return validate(value)
  } catch (error) {
    const id = idOf(value)
    throw id === undefined ? error : withFields(error as Error, { id })
  }
}

function validate (value: unknown): ClientMessage {
  if (!envelopeCheck.Check(value)) throw invalid(envelopeCheck, value, '')
  const checker = eventChecks.get(value.event)
  if (checker === undefined) throw new Errors.UNKNOWN_EVENT(EVENT_NAMES)
  const data = value.data as Record<string, unknown>
  for (const [key, prepare] of checker.trimmed) {
    const field = data[key]
    if (typeof field === 'string') data[key] = prepare(field)
  }
  if (!checker.check.Check(data)) throw invalid(checker.check, data, 'data.')
  return value as ClientMessage
}

/** INVALID_MESSAGE naming the first wrong field: "data.text must be …". */
function invalid (check: TypeCheck<TSchema>, value: unknown, prefix: string) {
  const first = check.Errors(value).First()
  const path = first?.path.split('/').filter(Boolean).join('.') ?? ''
  if (path === '') return new Errors.INVALID_MESSAGE(`The message must be ${ClientEnvelope.must as string}`)
  const field = prefix + path
  return new Errors.INVALID_MESSAGE(first?.type === ValueErrorType.ObjectRequiredProperty
    ? `${field} is required`
    : `${field} must be ${(first?.schema.must as string | undefined) ?? 'valid'}`)
}

const idCheck = TypeCompiler.Compile(ClientId)

function idOf (value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { id } = value as { id?: unknown }
  return idCheck.Check(id) ? id : undefined
}

/** The `id` of a frame that will not be handled (rate limited), if it has a usable one. */
export function frameId (raw: RawData, isBinary: boolean): string | undefined {
  if (isBinary) return undefined
  try {
    return idOf(sjson.parse(raw as Buffer, PARSE_OPTIONS))
  } catch {
    return undefined
  }
}

/** The serialised `{event, data}` envelope, the same text for every recipient. */
export function encode<E extends keyof ServerEvents> (event: E, data: ServerEvents[E]): string {
  return JSON.stringify({ event, data })
}

/** `session-joined` with its history as the kept frames themselves (MultiplayerSession.history): nothing is parsed again. */
export function encodeSessionJoined (data: Omit<ServerEvents['session-joined'], 'history'>, history: readonly string[]): string {
  // `history` last, so the JSON ends with `"history":[]}}`; the frames go between the brackets.
  const empty = encode('session-joined', { ...data, history: [] })
  return `${empty.slice(0, -3)}${history.join(',')}]}}`
}
