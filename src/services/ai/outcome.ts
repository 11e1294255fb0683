import type { AiProviderName } from '../../config.js'

/*
 * What one AI request (all its attempts) came to. The AI service reports
 * one per request; the AI plugin writes it to ai-requests.log and hands it to
 * the metrics service. It never carries persona or message text.
 */
export interface AiOutcome {
  operation: 'greeting' | 'chat' | 'regenerate'
  provider: AiProviderName
  model: string
  streamed: boolean
  /** SPEC §4.8: the model's own reply was returned (result ok or blocked). */
  success: boolean
  /**
   * ok: the model answered; blocked: safety filter or empty reply (200 with a
   * deflection); offline: offline mode (200 with a canned reply); failed: the
   * request ended in 503 AI_UNAVAILABLE (upstream error, timeout, circuit
   * open, queue full); aborted: the client went away first (errorCode
   * CLIENT_GONE), so nothing was answered: neither a failure nor a fallback.
   */
  result: 'ok' | 'blocked' | 'offline' | 'failed' | 'aborted'
  attempts: number
  latencyMs: number
  inputTokens?: number
  outputTokens?: number
  finishReason?: string
  errorCode?: string
}

export type CircuitState = 'closed' | 'open' | 'half-open'

export interface AiStatus {
  provider: AiProviderName
  model: string
  circuit: CircuitState
}
