import { finished, Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { Errors, withFields } from '../errors.js'
import { errorResponses } from '../schemas/common.js'
import {
  ChatBody, ChatEventStream, ChatResponse, ChatUnavailable, CompanionConfig, IdempotencyHeaders,
  InitializeBody, InitializeResponse, InitializeUnavailable, RegenerateBody
} from '../schemas/companion.js'
import { AiUnavailableError, type CompanionReply } from '../services/ai/service.js'
import { createIdempotency, type IdempotentRun } from '../services/companion/idempotency.js'
import { createReplyLock, longestReplyMs } from '../services/companion/reply-lock.js'
import { isoTime } from '../services/iso-time.js'
import { normalizeIP } from '../services/limits/client-key.js'
import type { CompanionSession, Persona, StoredTurn } from '../services/sessions/store.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set while a request with an Idempotency-Key runs (SPEC §2.5); it ends with the response. */
    idempotency: IdempotentRun | null
  }
}

/*
 * SPEC §2.1–2.5: create a companion session with its greeting; chat in it
 * and regenerate its last reply, as JSON or as Server-Sent Events. The
 * history keeps what the user said and what the model said, never a
 * fallback in the model's place. All three routes take an Idempotency-Key,
 * and a session generates one reply at a time.
 */

/**
 * SPEC §2.1 limits apply after trimming, and (issue 15) after NFKC: the
 * persona is normalised for the prompt, and one character can become 18.
 * So every string field (two levels deep) is normalised before validation.
 */
function normaliseBody (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  normaliseStrings(request.body, 2)
  done()
}

function normaliseStrings (value: unknown, depth: number): void {
  if (depth === 0 || typeof value !== 'object' || value === null || Array.isArray(value)) return
  const record = value as Record<string, unknown>
  for (const key of Object.keys(record)) {
    const field = record[key]
    if (typeof field === 'string') record[key] = field.normalize('NFKC').trim()
    else normaliseStrings(field, depth - 1)
  }
}

const toPersona = ({ name, personality, identity, gender = '', role }: Static<typeof CompanionConfig>): Persona =>
  ({ name, personality, identity, gender, role })

const kOnEnd = Symbol('callbacks once the response ended')
type EndingReply = FastifyReply & { [kOnEnd]: Array<() => void> | null }

/**
 * Runs `callback` once the response has ended, however it ended (sent, or
 * the client gone). One stream listener per response for every part that
 * asks: a streamed reply with an Idempotency-Key had 13 'close' listeners
 * with Fastify's own, and Node printed MaxListenersExceededWarning for it.
 * The callbacks live on the reply (decorated), not in a WeakMap keyed by
 * it: a WeakMap entry per request measured ~60 µs more per chat request.
 * (Fastify's `request.signal` would do for the abort, but on Node 20 it
 * aborts as soon as a POST's body has been read.)
 */
function onResponseEnd (reply: FastifyReply, callback: () => void): void {
  const ending = reply as EndingReply
  const callbacks = ending[kOnEnd]
  if (callbacks !== null) {
    callbacks.push(callback)
    return
  }
  const registered = ending[kOnEnd] = [callback]
  finished(reply.raw, () => { for (const run of registered) run() })
}

/**
 * Aborted when the client goes away before the response is complete (also if
 * it already has), so the upstream call stops too. A handler whose signal
 * aborted just returns: Fastify sends nothing on a closed connection, and a
 * client that left is no 503 (its AI outcome is `aborted`).
 */
function disconnectSignal (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  onResponseEnd(reply, () => {
    if (!reply.raw.writableFinished) controller.abort()
  })
  return controller.signal
}

const wantsEventStream = (request: FastifyRequest) => request.headers.accept?.includes('text/event-stream') === true

/** A reply the history keeps: the model's own, not a fallback or a withheld one. */
const modelTurn = (reply: CompanionReply | undefined, at: number): StoredTurn | undefined =>
  reply === undefined || reply.fallback ? undefined : { role: 'model', text: reply.text, timestamp: at }

const replyMeta = (persona: Persona, reply: CompanionReply, at: number) => ({
  companionName: persona.name,
  timestamp: isoTime(at),
  fallback: reply.fallback,
  blocked: reply.blocked ? true as const : undefined
})

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

/** One reply to generate: the message, the turns before it, and what to keep once it is known. */
interface Exchange {
  session: CompanionSession
  /** The turns before the message (the AI service sends the last AI_HISTORY_MESSAGES of them). */
  context: readonly StoredTurn[]
  message: string
  /** How the AI call is logged (ai-requests.log `operation`). */
  operation: 'chat' | 'regenerate'
  /** Keeps what the exchange leaves in the history; `reply` undefined: the AI was unavailable. */
  keep: (reply: CompanionReply | undefined, at: number) => Promise<unknown>
}

const companion: FastifyPluginAsyncTypebox = async (app) => {
  const { ai, sessions, config } = app
  const keep = config.COMPANION_HISTORY_KEPT

  /** A new companion session, counted against its creator's creation rate and memory share. */
  function createSession (request: FastifyRequest, persona: Persona): Promise<CompanionSession> {
    const owner = normalizeIP(request.ip)
    app.admitSessionCreation(owner)
    return sessions.createCompanion(persona, owner)
  }
  const logFailure = (what: string) => (error: unknown) => app.log.error({ errType: (error as Error).name }, what)

  // The policy of SPEC §2.5 over state in the session store (shared in Redis mode).
  const replyLock = createReplyLock({ store: sessions, ttlMs: longestReplyMs(config), onStoreError: logFailure('freeing a reply lock failed') })
  const idempotency = createIdempotency({
    store: sessions,
    ttlMs: config.IDEMPOTENCY_TTL_MS,
    runningTtlMs: longestReplyMs(config),
    onStoreError: logFailure('ending an idempotency record failed')
  })

  app.decorateRequest('idempotency', null)
  app.decorateReply(kOnEnd, null)
  app.addHook('preValidation', normaliseBody)

  /**
   * SPEC §2.5, after validation (the key's format, the body to fingerprint)
   * and before the handler: a repeat is answered here, from the record.
   * Keys are scoped per route and client IP.
   */
  app.addHook('preHandler', async (request, reply) => {
    const key = request.headers['idempotency-key']
    if (typeof key !== 'string') return
    const started = await idempotency.start(`${request.routeOptions.url}:${request.ip}`, key, request.body)
    if (started.replay !== undefined) {
      return reply.code(started.replay.statusCode).header('idempotent-replayed', 'true')
        .type('application/json; charset=utf-8').send(started.replay.body)
    }
    request.idempotency = started
    // A response that ended without an outcome (client gone, stream broken) is a failure.
    // (Ending never rejects: a store error is reported by the idempotency service.)
    onResponseEnd(reply, () => { started.fail() })
  })

  /** A JSON response is remembered before it is sent, so a repeat arriving right after it is a replay. */
  app.addHook('onSend', async (request, reply, payload) => {
    const run = request.idempotency
    if (run === null || run.ended) return payload
    if (reply.statusCode >= 300) await run.fail()
    else if (typeof payload === 'string') await run.succeed({ statusCode: reply.statusCode, body: payload })
    return payload
  })

  /** AiUnavailableError → 503 AI_UNAVAILABLE carrying the fallback (SPEC §4.5); anything else as it is. */
  const unavailable = (error: unknown, sessionId: string, field: 'greeting' | 'message') =>
    error instanceof AiUnavailableError
      ? withFields(new Errors.AI_UNAVAILABLE(), { fallback: true, retryAfter: error.retryAfterSeconds, sessionId, [field]: error.fallbackText })
      : error

  const chatBody = (session: CompanionSession, reply: CompanionReply, at: number) =>
    ({ sessionId: session.id, message: reply.text, ...replyMeta(session.persona, reply, at) })

  /** The session as it is now (after taking its lock), or 404; `multiplayer` says what a multiplayer id is. */
  async function companionSession (id: string, multiplayer: () => Error = () => new Errors.SESSION_NOT_FOUND()): Promise<CompanionSession> {
    const session = await sessions.get(id)
    if (session === undefined) throw new Errors.SESSION_NOT_FOUND()
    if (session.kind !== 'companion') throw multiplayer()
    return session
  }

  async function liveCompanion (id: string | undefined): Promise<CompanionSession | undefined> {
    const session = id === undefined ? undefined : await sessions.get(id)
    return session?.kind === 'companion' ? session : undefined
  }

  /**
   * SPEC §2.2: a live companion session, else (SPEC §2.5) the one a failed
   * attempt of this idempotent request made, else a new one from
   * companionConfig, else 404.
   */
  async function openSession (request: FastifyRequest, { sessionId, companionConfig }: Static<typeof ChatBody>, run: IdempotentRun | null): Promise<CompanionSession> {
    const session = await liveCompanion(sessionId) ?? await liveCompanion(run?.retrying?.sessionId) ??
      (companionConfig === undefined ? undefined : await createSession(request, toPersona(companionConfig)))
    if (session === undefined) throw new Errors.SESSION_NOT_FOUND()
    if (run !== null) run.sessionId = session.id
    return session
  }

  /** A new message: the user's turn is kept even when the AI fails (§4.5), not when a filter withheld the reply (§4.7). */
  function newMessage (session: CompanionSession, message: string, receivedAt: number): Exchange {
    return {
      session,
      context: session.history,
      message,
      operation: 'chat',
      keep: async (reply, at) => {
        if (reply?.blocked === true) return
        const user: StoredTurn = { role: 'user', text: message, timestamp: receivedAt }
        const model = modelTurn(reply, at)
        await sessions.appendTurns(session.id, model === undefined ? [user] : [user, model], keep)
      }
    }
  }

  /** SPEC §2.4: the last user message answered again; its reply (if any) becomes an alternative. */
  function answerAgain (session: CompanionSession): Exchange | undefined {
    const index = session.history.findLastIndex((turn) => turn.role === 'user')
    if (index === -1) return undefined
    return {
      session,
      context: session.history.slice(0, index),
      message: session.history[index].text,
      operation: 'regenerate',
      keep: async (reply, at) => {
        const model = modelTurn(reply, at)
        if (model !== undefined) await sessions.reviseReply(session.id, model, keep)
      }
    }
  }

  async function failed (error: unknown, exchange: Exchange): Promise<unknown> {
    if (error instanceof AiUnavailableError) await exchange.keep(undefined, Date.now())
    return unavailable(error, exchange.session.id, 'message')
  }

  /**
   * SPEC §2.5: generates a reply holding the session's lock (409
   * SESSION_BUSY when another reply is being generated), reading the session
   * only once the lock is held. The lock is freed once the reply is kept,
   * before the client sees the end of it.
   */
  async function generate (request: FastifyRequest, reply: FastifyReply, sessionId: string, prepare: () => Promise<Exchange>) {
    const release = await replyLock.hold(sessionId)
    let exchange: Exchange
    try {
      exchange = await prepare()
    } catch (error) {
      await release()
      throw error
    }
    const signal = disconnectSignal(reply)
    if (wantsEventStream(request)) return streamReply(request, reply, exchange, signal, release)
    const { session, context, message, operation } = exchange
    try {
      let result: CompanionReply
      try {
        result = await ai.reply(session.persona, context, message, { signal, operation })
      } catch (error) {
        if (signal.aborted) return
        throw await failed(error, exchange)
      }
      const at = Date.now()
      await exchange.keep(result, at)
      return chatBody(session, result, at)
    } finally {
      await release()
    }
  }

  /**
   * The reply as Server-Sent Events. Headers go out with the first chunk, so
   * a failure before it is still a plain 503 with Retry-After; a failure
   * after it ends the stream with an `error` event. An idempotent request is
   * remembered as the JSON body of its `done` event.
   */
  async function streamReply (request: FastifyRequest, reply: FastifyReply, exchange: Exchange, signal: AbortSignal, release: () => Promise<void>) {
    const { session, context, message, operation } = exchange
    const replies = ai.replyStream(session.persona, context, message, { signal, operation })
    // The AI request and the lock end with the response, however that ends: a
    // client gone mid-stream, or even before the stream below was first read
    // (a stream destroyed unread never runs its generator, so a `finally`
    // there would be skipped and the request would keep its concurrency slot
    // and never report).
    onResponseEnd(reply, () => {
      replies.return(undefined as never).catch(logFailure('ending an AI stream failed'))
      release() // never rejects: a store error is reported by the lock
    })
    let first: IteratorResult<string, CompanionReply>
    try {
      first = await replies.next()
    } catch (error) {
      try {
        if (signal.aborted) return
        throw await failed(error, exchange)
      } finally {
        await release()
      }
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
        const at = Date.now()
        await exchange.keep(result, at)
        await release()
        const body = chatBody(session, result, at)
        await request.idempotency?.succeed({ statusCode: 200, body: JSON.stringify(body) })
        yield sse('done', body)
      } catch (error) {
        if (!(error instanceof AiUnavailableError)) throw error
        await exchange.keep(undefined, Date.now())
        await release()
        await request.idempotency?.fail()
        yield sse('error', { error: new Errors.AI_UNAVAILABLE().message, code: 'AI_UNAVAILABLE', message: error.fallbackText })
      } finally {
        await release()
      }
    }

    return reply
      .type('text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no') // proxies (nginx) must not hold chunks back
      .send(Readable.from(events()))
  }

  // Chat and regenerate answer alike: JSON, or a stream with Accept: text/event-stream.
  const replyResponses = {
    200: {
      content: {
        'application/json': { schema: ChatResponse },
        'text/event-stream': { schema: ChatEventStream }
      }
    },
    503: ChatUnavailable,
    ...errorResponses(400, 404, 409, 413, 415, 422, 429, 500)
  }

  app.post('/api/ai-companion/initialize', {
    config: { aiRateLimit: true },
    schema: {
      summary: 'Create a companion session and get its greeting',
      headers: IdempotencyHeaders,
      body: InitializeBody,
      response: { 200: InitializeResponse, 503: InitializeUnavailable, ...errorResponses(400, 409, 413, 415, 422, 429, 500) }
    }
  }, async (request, reply) => {
    const persona = toPersona(request.body.companionConfig)
    // A retry of an initialize that got a 503 greets in the session that 503 named (still without a greeting).
    const run = request.idempotency
    const earlier = await liveCompanion(run?.retrying?.sessionId)
    const session = earlier?.history.length === 0 ? earlier : await createSession(request, persona)
    if (run !== null) run.sessionId = session.id
    const signal = disconnectSignal(reply)
    let greeting: CompanionReply
    try {
      greeting = await ai.greet(persona, { signal })
    } catch (error) {
      if (signal.aborted) return
      throw unavailable(error, session.id, 'greeting')
    }
    const at = Date.now()
    // The greeting is the conversation's first model turn (not when it is a fallback).
    const model = modelTurn(greeting, at)
    if (model !== undefined) await sessions.appendTurns(session.id, [model], keep)
    return { sessionId: session.id, greeting: greeting.text, ...replyMeta(persona, greeting, at) }
  })

  app.post('/api/ai-companion/chat', {
    config: { aiRateLimit: true },
    schema: {
      summary: 'Send a message, get the companion\'s reply (streamed as Server-Sent Events with Accept: text/event-stream)',
      headers: IdempotencyHeaders,
      body: ChatBody,
      response: replyResponses
    }
  }, async (request, reply) => {
    const receivedAt = Date.now()
    const { message } = request.body
    const { id } = await openSession(request, request.body, request.idempotency)
    const retry = request.idempotency?.retrying !== undefined
    return generate(request, reply, id, async () => {
      const session = await companionSession(id)
      // SPEC §2.5: a retry after a 503 answers the message that 503 kept rather than keeping it twice.
      const kept = session.history.at(-1)
      const again = retry && kept?.role === 'user' && kept.text === message ? answerAgain(session) : undefined
      return again ?? newMessage(session, message, receivedAt)
    })
  })

  app.post('/api/ai-companion/regenerate', {
    config: { aiRateLimit: true },
    schema: {
      summary: 'Answer the last user message again; the replaced reply is kept as an alternative (JSON or Server-Sent Events, like chat)',
      headers: IdempotencyHeaders,
      body: RegenerateBody,
      response: replyResponses
    }
  }, async (request, reply) => {
    const { sessionId } = request.body
    return generate(request, reply, sessionId, async () => {
      const session = await companionSession(sessionId, () => new Errors.NOT_A_COMPANION_SESSION())
      const exchange = answerAgain(session)
      if (exchange === undefined) throw new Errors.NOTHING_TO_REGENERATE()
      return exchange
    })
  })
}

export default companion
