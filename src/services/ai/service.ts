import { EventEmitter, once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import type { AiOutcome, AiStatus } from './outcome.js'
import type { ChatTurn, Persona } from '../sessions/store.js'
import { createCircuitBreaker } from './circuit-breaker.js'
import { blockedReply, greetingFallback, offlineReply, unavailableReply } from './fallbacks.js'
import { createGeminiClient, type ModelChunk } from './gemini.js'
import { createConcurrencyLimiter, LimiterRejection } from './limiter.js'
import { buildRequest, GREETING_REQUEST, type Operation } from './prompt.js'
import { nextRetryDelay } from './retry.js'
import { classifyFailure, type UpstreamFailure } from './upstream-errors.js'

/*
 * The AI companion (SPEC §4): prompt, retries, circuit breaker, concurrency
 * bound, offline mode, blocked replies and one AiOutcome per request. Plain
 * factory, no Fastify: the clock, the backoff sleep and the jitter source
 * are injected so tests need not wait. Without an API key it runs offline.
 */

export interface AiServiceOptions {
  /** Unset → offline mode (canned replies, no upstream calls). */
  apiKey?: string
  baseUrl?: string
  model: string
  timeoutMs: number
  maxAttempts: number
  retryBaseMs: number
  historyMessages: number
  maxConcurrency: number
  onOutcome: (outcome: AiOutcome) => void
  now?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  random?: () => number
}

export interface CompanionReply {
  text: string
  /** true when the text is not the model's: offline mode or a withheld reply. */
  fallback: boolean
  /** A safety filter withheld the reply, or it was empty (SPEC §4.7). */
  blocked: boolean
}

export interface CallOptions {
  /**
   * Aborted when the client goes away: the upstream call is aborted too, and
   * the call rejects with the signal's reason (as fetch does), not with
   * AiUnavailableError: nobody is left to answer.
   */
  signal?: AbortSignal
}

/** The request ended without a reply (SPEC §4.5): the caller answers 503 with the fallback. */
export class AiUnavailableError extends Error {
  constructor (readonly reason: string, readonly retryAfterSeconds: number, readonly fallbackText: string) {
    super(`AI unavailable: ${reason}`)
    this.name = 'AiUnavailableError'
  }
}

// A per-day quota will not come back in seconds; wait what Google says, at most this.
const PER_DAY_MAX_OPEN_MS = 15 * 60_000

// Finish reasons of a complete reply. Any other (SAFETY, PROHIBITED_CONTENT,
// BLOCKLIST, SPII, RECITATION, …) means a filter withheld or cut the reply.
const NORMAL_FINISH = new Set(['STOP', 'MAX_TOKENS', 'FINISH_REASON_UNSPECIFIED'])

const defaultSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal })

interface Job {
  operation: Operation
  persona: Persona
  history: readonly ChatTurn[]
  message: string
  streamed: boolean
  signal?: AbortSignal
}

/** One attempt's abort signal: the client's signal plus the per-attempt timeout. */
function attemptSignal (parent: AbortSignal | undefined, timeoutMs: number) {
  const controller = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort()
  }, timeoutMs)
  const onParentAbort = () => controller.abort()
  if (parent?.aborted === true) controller.abort()
  else parent?.addEventListener('abort', onParentAbort, { once: true })
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    /** Stops the timer and aborts whatever of the attempt still runs (a stream the consumer left). */
    end: () => {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParentAbort)
      controller.abort()
    }
  }
}

/** A streamed reply so far: text appended, the latest of everything else. */
function merge (sofar: ModelChunk, chunk: ModelChunk): ModelChunk {
  return {
    text: sofar.text + chunk.text,
    finishReason: chunk.finishReason ?? sofar.finishReason,
    blockReason: chunk.blockReason ?? sofar.blockReason,
    inputTokens: chunk.inputTokens ?? sofar.inputTokens,
    outputTokens: chunk.outputTokens ?? sofar.outputTokens
  }
}

export function createAiService (options: AiServiceOptions) {
  const {
    apiKey, baseUrl, model, timeoutMs, maxAttempts, retryBaseMs, historyMessages, maxConcurrency, onOutcome,
    now = Date.now, sleep = defaultSleep, random = Math.random
  } = options
  const client = apiKey === undefined ? undefined : createGeminiClient({ apiKey, model, baseUrl })
  const breaker = createCircuitBreaker({ now })
  const limiter = createConcurrencyLimiter({ max: maxConcurrency, maxQueue: maxConcurrency, maxWaitMs: timeoutMs })
  const policy = { maxAttempts, baseMs: retryBaseMs, timeoutMs, random }
  // Requests started and not yet reported; 'idle' when that drops to none.
  let inFlight = 0
  const events = new EventEmitter()

  function recordFailure (failure: UpstreamFailure): void {
    if (failure.perDayQuota) breaker.openFor(Math.min(failure.retryDelayMs ?? PER_DAY_MAX_OPEN_MS, PER_DAY_MAX_OPEN_MS))
    else breaker.failure()
  }

  function retryAfterMs (failure?: UpstreamFailure): number {
    const open = breaker.remainingMs()
    if (open > 0) return open
    return failure?.retryDelayMs ?? retryBaseMs
  }

  /**
   * One AI request, all attempts included. Yields text chunks when streamed
   * (a non-streamed job never yields) and returns the final reply; throws
   * AiUnavailableError when there is none, or the signal's reason when the
   * client went away. Reports exactly one outcome, also when the consumer
   * stops iterating early.
   */
  async function * run (job: Job): AsyncGenerator<string, CompanionReply> {
    const started = now()
    let attempts = 0
    let reported = false
    inFlight++
    const report = (result: AiOutcome['result'], details: Partial<AiOutcome> = {}) => {
      reported = true
      onOutcome({ operation: job.operation, model, streamed: job.streamed, result, attempts, latencyMs: now() - started, ...details })
      if (--inFlight === 0) events.emit('idle')
    }
    // The client left: no verdict on upstream health, and no failure of the AI.
    const aborted = () => {
      breaker.abandon()
      report('aborted', { errorCode: 'CLIENT_GONE' })
      return job.signal?.reason
    }
    const unavailable = (code: string, waitMs: number) => {
      report('failed', { errorCode: code })
      const fallbackText = job.operation === 'greeting' ? greetingFallback(job.persona) : unavailableReply(job.persona)
      return new AiUnavailableError(code, Math.max(1, Math.ceil(waitMs / 1000)), fallbackText)
    }
    const finish = (reply: ModelChunk): CompanionReply => {
      const text = reply.text.trim()
      const details = { finishReason: reply.finishReason, inputTokens: reply.inputTokens, outputTokens: reply.outputTokens }
      const cut = reply.finishReason !== undefined && !NORMAL_FINISH.has(reply.finishReason)
      if (reply.blockReason === undefined && !cut && text !== '') {
        report('ok', details)
        return { text, fallback: false, blocked: false }
      }
      const errorCode = reply.blockReason !== undefined ? `PROMPT_BLOCKED_${reply.blockReason}` : cut ? 'REPLY_BLOCKED' : 'EMPTY_REPLY'
      report('blocked', { ...details, errorCode })
      return { text: blockedReply(), fallback: true, blocked: true }
    }

    if (client === undefined) {
      report('offline')
      const text = job.operation === 'greeting' ? greetingFallback(job.persona) : offlineReply(job.persona, job.message)
      return { text, fallback: true, blocked: false }
    }
    if (!breaker.allow()) throw unavailable('CIRCUIT_OPEN', breaker.remainingMs())
    let release: () => void
    try {
      release = await limiter.acquire(job.signal)
    } catch (error) {
      if (!(error instanceof LimiterRejection)) throw aborted()
      breaker.abandon()
      throw unavailable(error.reason, retryBaseMs)
    }

    let emitted = false
    try {
      const request = buildRequest(job.persona, job.operation, job.history, job.message, historyMessages)
      for (;;) {
        attempts++
        const attempt = attemptSignal(job.signal, timeoutMs)
        try {
          let reply: ModelChunk
          if (job.streamed) {
            reply = { text: '' }
            for await (const chunk of client.stream(request, attempt.signal)) {
              reply = merge(reply, chunk)
              if (chunk.text !== '') {
                emitted = true
                yield chunk.text
              }
            }
          } else {
            reply = await client.generate(request, attempt.signal)
          }
          breaker.success()
          return finish(reply)
        } catch (error) {
          if (job.signal?.aborted === true) throw aborted()
          const failure = classifyFailure(error, attempt.timedOut())
          // Text already sent to the client cannot be taken back by a retry.
          const wait = emitted ? undefined : nextRetryDelay(failure, attempts, policy)
          if (wait === undefined) {
            recordFailure(failure)
            throw unavailable(failure.code, retryAfterMs(failure))
          }
          try {
            await sleep(wait, job.signal)
          } catch {
            throw aborted()
          }
        } finally {
          attempt.end()
        }
      }
    } finally {
      release()
      // The consumer stopped reading a stream (client gone) mid-reply.
      if (!reported) aborted()
    }
  }

  async function complete (replies: AsyncGenerator<string, CompanionReply>): Promise<CompanionReply> {
    for (;;) {
      const step = await replies.next()
      if (step.done === true) return step.value
    }
  }

  return {
    status: (): AiStatus => ({ provider: client === undefined ? 'offline' : 'gemini', model, circuit: breaker.state() }),

    /**
     * Resolves true once every request started has reported its outcome
     * (none in flight), or false when `timeoutMs` passes first.
     */
    async idle (timeoutMs: number): Promise<boolean> {
      if (inFlight === 0) return true
      try {
        await once(events, 'idle', { signal: AbortSignal.timeout(timeoutMs) })
        return true
      } catch {
        return false
      }
    },

    /** The companion's first message (SPEC §4.2). */
    greet: (persona: Persona, { signal }: CallOptions = {}) =>
      complete(run({ operation: 'greeting', persona, history: [], message: GREETING_REQUEST, streamed: false, signal })),

    /** A reply to `message`, with the last `historyMessages` of `history` as context. */
    reply: (persona: Persona, history: readonly ChatTurn[], message: string, { signal }: CallOptions = {}) =>
      complete(run({ operation: 'chat', persona, history, message, streamed: false, signal })),

    /** The same reply streamed: yields text chunks, returns the final reply. */
    replyStream: (persona: Persona, history: readonly ChatTurn[], message: string, { signal }: CallOptions = {}) =>
      run({ operation: 'chat', persona, history, message, streamed: true, signal })
  }
}

export type AiService = ReturnType<typeof createAiService>
