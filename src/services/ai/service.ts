import { EventEmitter, once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import type { AiOutcome, AiStatus } from './outcome.js'
import type { ChatTurn, Persona } from '../sessions/store.js'
import { createCircuitBreaker } from './circuit-breaker.js'
import { blockedReply, greetingFallback, unavailableReply } from './fallbacks.js'
import { createConcurrencyLimiter, LimiterRejection } from './limiter.js'
import { buildRequest, GREETING_REQUEST } from './prompt.js'
import type { ModelChunk, ModelProvider } from './provider.js'
import { nextRetryDelay } from './retry.js'
import { isUpstreamHealthFailure, TIMEOUT, type UpstreamFailure } from './upstream-errors.js'

/*
 * The AI companion (SPEC §4): prompt, retries, circuit breaker, concurrency
 * bound, offline mode, blocked replies and one AiOutcome per request, the
 * same for every provider (§4.9). Plain factory, no Fastify: the provider,
 * the clock, the backoff sleep and the jitter source are injected so tests
 * need not wait.
 */

export interface AiServiceOptions {
  /** Gemini, OpenAI-compatible or offline (canned replies, none of the policy). */
  provider: ModelProvider
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
  /** A reply asked for again (SPEC §2.4) is logged as `regenerate`. */
  operation?: ReplyOperation
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

export type ReplyOperation = 'chat' | 'regenerate'

// A per-day quota will not come back in seconds; wait what Google says, at most this.
const PER_DAY_MAX_OPEN_MS = 15 * 60_000

/** For calls without a client signal (the offline provider never waits on it). */
const NEVER_ABORTED = new AbortController().signal

const defaultSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal })

interface Job {
  operation: AiOutcome['operation']
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
    /**
     * Stops the timer and, unless the attempt completed, aborts whatever of it
     * still runs (a stream the consumer left, a request given up). A completed
     * one is not aborted: that would build an AbortError and wake the SDK's
     * listeners on every successful call.
     */
    end: (completed: boolean) => {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParentAbort)
      if (!completed) controller.abort()
    }
  }
}

/** A streamed reply so far: text appended, the latest of everything else. */
function merge (sofar: ModelChunk, chunk: ModelChunk): ModelChunk {
  return {
    text: sofar.text + chunk.text,
    finishReason: chunk.finishReason ?? sofar.finishReason,
    blockReason: chunk.blockReason ?? sofar.blockReason,
    filtered: chunk.filtered === true || sofar.filtered === true,
    inputTokens: chunk.inputTokens ?? sofar.inputTokens,
    outputTokens: chunk.outputTokens ?? sofar.outputTokens
  }
}

export function createAiService (options: AiServiceOptions) {
  const {
    provider, timeoutMs, maxAttempts, retryBaseMs, historyMessages, maxConcurrency, onOutcome,
    now = Date.now, sleep = defaultSleep, random = Math.random
  } = options
  const { name: providerName, model } = provider
  const breaker = createCircuitBreaker({ now })
  const limiter = createConcurrencyLimiter({ max: maxConcurrency, maxQueue: maxConcurrency, maxWaitMs: timeoutMs })
  const policy = { maxAttempts, baseMs: retryBaseMs, timeoutMs, random }
  // Requests started and not yet reported; 'idle' when that drops to none.
  let inFlight = 0
  const events = new EventEmitter()

  /** Only upstream-health failures count toward the circuit; a content-dependent 4xx is no verdict. */
  function recordFailure (failure: UpstreamFailure): void {
    if (failure.perDayQuota) breaker.openFor(Math.min(failure.retryDelayMs ?? PER_DAY_MAX_OPEN_MS, PER_DAY_MAX_OPEN_MS))
    else if (isUpstreamHealthFailure(failure)) breaker.failure()
    else breaker.abandon()
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
      onOutcome({
        operation: job.operation,
        provider: providerName,
        model,
        streamed: job.streamed,
        // SPEC §4.8: the model's own reply was returned, a withheld one included.
        success: result === 'ok' || result === 'blocked',
        result,
        attempts,
        latencyMs: now() - started,
        ...details
      })
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
      const cut = reply.filtered === true
      if (reply.blockReason === undefined && !cut && text !== '') {
        report('ok', details)
        return { text, fallback: false, blocked: false }
      }
      const errorCode = reply.blockReason !== undefined ? `PROMPT_BLOCKED_${reply.blockReason}` : cut ? 'REPLY_BLOCKED' : 'EMPTY_REPLY'
      report('blocked', { ...details, errorCode })
      return { text: blockedReply(), fallback: true, blocked: true }
    }

    // A regenerated reply is asked for exactly as the chat reply was.
    const request = buildRequest(job.persona, job.operation === 'greeting' ? 'greeting' : 'chat', job.history, job.message, historyMessages)
    if (providerName === 'offline') {
      const { text } = await provider.generate(request, job.signal ?? NEVER_ABORTED)
      report('offline')
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
      for (;;) {
        attempts++
        const attempt = attemptSignal(job.signal, timeoutMs)
        let completed = false
        try {
          let reply: ModelChunk
          if (job.streamed) {
            reply = { text: '' }
            for await (const chunk of provider.stream(request, attempt.signal)) {
              reply = merge(reply, chunk)
              if (chunk.text !== '') {
                emitted = true
                yield chunk.text
              }
            }
          } else {
            reply = await provider.generate(request, attempt.signal)
          }
          completed = true
          breaker.success()
          return finish(reply)
        } catch (error) {
          if (job.signal?.aborted === true) throw aborted()
          const failure = attempt.timedOut() ? TIMEOUT : provider.classify(error)
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
          attempt.end(completed)
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
    status: (): AiStatus => ({ provider: providerName, model, circuit: breaker.state() }),

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
    reply: (persona: Persona, history: readonly ChatTurn[], message: string, { signal, operation = 'chat' }: CallOptions = {}) =>
      complete(run({ operation, persona, history, message, streamed: false, signal })),

    /** The same reply streamed: yields text chunks, returns the final reply. */
    replyStream: (persona: Persona, history: readonly ChatTurn[], message: string, { signal, operation = 'chat' }: CallOptions = {}) =>
      run({ operation, persona, history, message, streamed: true, signal })
  }
}

export type AiService = ReturnType<typeof createAiService>
