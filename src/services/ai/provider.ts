import type { AiProviderName } from '../../config.js'
import type { ModelRequest } from './prompt.js'
import type { UpstreamFailure } from './upstream-errors.js'

export type { ModelRequest }

/*
 * The seam between the AI policy (service.ts: retries, timeouts, circuit
 * breaker, concurrency, fallbacks, log lines) and the models (SPEC §4.9). A
 * provider only knows how to ask its API once and how to read its answers
 * and errors; whether and when to ask is decided above it, the same for all.
 */

/** One response, or one chunk of a streamed response, in the provider's own words. */
export interface ModelChunk {
  text: string
  /** The provider's finish reason, as it said it (for the log). */
  finishReason?: string
  /** The prompt was refused before any reply (Gemini's promptFeedback.blockReason). */
  blockReason?: string
  /** A safety filter withheld or cut the reply (Gemini SAFETY…, OpenAI content_filter). */
  filtered?: boolean
  inputTokens?: number
  outputTokens?: number
}

export interface ModelProvider {
  readonly name: AiProviderName
  readonly model: string
  /** One attempt, whole. Rejects with the SDK's error; `classify` reads it. */
  generate: (request: ModelRequest, signal: AbortSignal) => Promise<ModelChunk>
  /** One attempt, streamed. Throws the SDK's error mid-stream, too. */
  stream: (request: ModelRequest, signal: AbortSignal) => AsyncIterable<ModelChunk>
  /** What a failed attempt's error means for the policy (status, server-requested wait, …). */
  classify: (error: unknown) => UpstreamFailure
}
