import { finished, Readable } from 'node:stream'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { Errors, withFields } from '../errors.js'
import { errorResponses } from '../schemas/common.js'
import {
  ChatBody, ChatEventStream, ChatResponse, ChatUnavailable, CompanionConfig,
  InitializeBody, InitializeResponse, InitializeUnavailable
} from '../schemas/companion.js'
import { AiUnavailableError, type CompanionReply } from '../services/ai/service.js'
import type { ChatTurn, CompanionSession, Persona } from '../services/sessions/store.js'

/*
 * SPEC §2.1–2.2: create a companion session with its greeting; chat in it,
 * as JSON or as Server-Sent Events. The history keeps what the user said and
 * what the model said, never a fallback in the model's place.
 */

/** SPEC §2.1 limits apply after trimming: trim every string field (two levels deep) before validation. */
function trimBody (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  trimStrings(request.body, 2)
  done()
}

function trimStrings (value: unknown, depth: number): void {
  if (depth === 0 || typeof value !== 'object' || value === null || Array.isArray(value)) return
  const record = value as Record<string, unknown>
  for (const key of Object.keys(record)) {
    const field = record[key]
    if (typeof field === 'string') record[key] = field.trim()
    else trimStrings(field, depth - 1)
  }
}

const toPersona = ({ name, personality, identity, gender = '', role }: Static<typeof CompanionConfig>): Persona =>
  ({ name, personality, identity, gender, role })

/**
 * Aborted when the client goes away before the response is complete (also if
 * it already has), so the upstream call stops too. A handler whose signal
 * aborted just returns: Fastify sends nothing on a closed connection, and a
 * client that left is no 503 (its AI outcome is `aborted`).
 */
function disconnectSignal (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  finished(reply.raw, () => {
    if (!reply.raw.writableFinished) controller.abort()
  })
  return controller.signal
}

const wantsEventStream = (request: FastifyRequest) => request.headers.accept?.includes('text/event-stream') === true

/** What an exchange leaves in the history; `reply` undefined: the AI was unavailable (the message stays). */
function turnsFor (message: string, reply?: CompanionReply): ChatTurn[] {
  if (reply?.blocked === true) return []
  const user: ChatTurn = { role: 'user', text: message }
  return reply === undefined || reply.fallback ? [user] : [user, { role: 'model', text: reply.text }]
}

const replyMeta = (persona: Persona, reply: CompanionReply) => ({
  companionName: persona.name,
  timestamp: new Date().toISOString(),
  fallback: reply.fallback,
  blocked: reply.blocked ? true as const : undefined
})

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const companion: FastifyPluginAsyncTypebox = async (app) => {
  const { ai, sessions } = app

  /** A new companion session, counted against its creator's creation rate and memory share. */
  function createSession (request: FastifyRequest, persona: Persona): Promise<CompanionSession> {
    const owner = normalizeIP(request.ip)
    app.admitSessionCreation(owner)
    return sessions.createCompanion(persona, owner)
  }
  const keep = app.config.AI_HISTORY_MESSAGES

  app.addHook('preValidation', trimBody)

  /** AiUnavailableError → 503 AI_UNAVAILABLE carrying the fallback (SPEC §4.5); anything else as it is. */
  const unavailable = (error: unknown, sessionId: string, field: 'greeting' | 'message') =>
    error instanceof AiUnavailableError
      ? withFields(new Errors.AI_UNAVAILABLE(), { fallback: true, retryAfter: error.retryAfterSeconds, sessionId, [field]: error.fallbackText })
      : error

  const chatBody = (session: CompanionSession, reply: CompanionReply) =>
    ({ sessionId: session.id, message: reply.text, ...replyMeta(session.persona, reply) })

  /** SPEC §2.2: a live companion session, else a new one from companionConfig, else 404. */
  async function openSession (request: FastifyRequest, { sessionId, companionConfig }: Static<typeof ChatBody>): Promise<CompanionSession> {
    const existing = sessionId === undefined ? undefined : await sessions.get(sessionId)
    if (existing?.kind === 'companion') return existing
    if (companionConfig !== undefined) return createSession(request, toPersona(companionConfig))
    throw new Errors.SESSION_NOT_FOUND()
  }

  async function failed (error: unknown, session: CompanionSession, message: string): Promise<unknown> {
    if (error instanceof AiUnavailableError) await sessions.appendTurns(session.id, turnsFor(message), keep)
    return unavailable(error, session.id, 'message')
  }

  /**
   * The reply as Server-Sent Events. Headers go out with the first chunk, so
   * a failure before it is still a plain 503 with Retry-After; a failure
   * after it ends the stream with an `error` event.
   */
  async function streamChat (reply: FastifyReply, session: CompanionSession, message: string, signal: AbortSignal) {
    const replies = ai.replyStream(session.persona, session.history, message, { signal })
    // The AI request ends with the response, however that ends: a client gone
    // mid-stream, or even before the stream below was first read (a stream
    // destroyed unread never runs its generator, so a `finally` there would be
    // skipped and the request would keep its concurrency slot and never report).
    finished(reply.raw, () => {
      replies.return(undefined as never).catch((error: unknown) => app.log.error({ errType: (error as Error).name }, 'ending an AI stream failed'))
    })
    let first: IteratorResult<string, CompanionReply>
    try {
      first = await replies.next()
    } catch (error) {
      if (signal.aborted) return
      throw await failed(error, session, message)
    }

    async function * events (): AsyncGenerator<string> {
      let step = first
      let sent = false
      try {
        while (step.done !== true) {
          sent = true
          yield sse('chunk', { text: step.value })
          step = await replies.next()
        }
        const result = step.value
        // A fallback (offline, withheld before any text) arrives whole: it is the one chunk.
        if (!sent) yield sse('chunk', { text: result.text })
        await sessions.appendTurns(session.id, turnsFor(message, result), keep)
        yield sse('done', chatBody(session, result))
      } catch (error) {
        if (!(error instanceof AiUnavailableError)) throw error
        await sessions.appendTurns(session.id, turnsFor(message), keep)
        yield sse('error', { error: new Errors.AI_UNAVAILABLE().message, code: 'AI_UNAVAILABLE', message: error.fallbackText })
      }
    }

    return reply
      .type('text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no') // proxies (nginx) must not hold chunks back
      .send(Readable.from(events()))
  }

  app.post('/api/ai-companion/initialize', {
    config: { aiRateLimit: true },
    schema: {
      summary: 'Create a companion session and get its greeting',
      body: InitializeBody,
      response: { 200: InitializeResponse, 503: InitializeUnavailable, ...errorResponses(400, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const persona = toPersona(request.body.companionConfig)
    const session = await createSession(request, persona)
    const signal = disconnectSignal(reply)
    let greeting: CompanionReply
    try {
      greeting = await ai.greet(persona, { signal })
    } catch (error) {
      if (signal.aborted) return
      throw unavailable(error, session.id, 'greeting')
    }
    if (!greeting.fallback) await sessions.appendTurns(session.id, [{ role: 'model', text: greeting.text }], keep)
    return { sessionId: session.id, greeting: greeting.text, ...replyMeta(persona, greeting) }
  })

  app.post('/api/ai-companion/chat', {
    config: { aiRateLimit: true },
    schema: {
      summary: 'Send a message, get the companion\'s reply (streamed as Server-Sent Events with Accept: text/event-stream)',
      body: ChatBody,
      response: {
        200: {
          content: {
            'application/json': { schema: ChatResponse },
            'text/event-stream': { schema: ChatEventStream }
          }
        },
        503: ChatUnavailable,
        ...errorResponses(400, 404, 413, 415, 429, 500)
      }
    }
  }, async (request, reply) => {
    const { message } = request.body
    const session = await openSession(request, request.body)
    const signal = disconnectSignal(reply)
    if (wantsEventStream(request)) return streamChat(reply, session, message, signal)
    let result: CompanionReply
    try {
      result = await ai.reply(session.persona, session.history, message, { signal })
    } catch (error) {
      if (signal.aborted) return
      throw await failed(error, session, message)
    }
    await sessions.appendTurns(session.id, turnsFor(message, result), keep)
    return chatBody(session, result)
  })
}

export default companion
