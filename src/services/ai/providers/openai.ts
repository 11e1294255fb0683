import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from 'openai'
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions'
import type { ModelChunk, ModelProvider, ModelRequest } from '../provider.js'
import { httpFailure, transportFailure, type UpstreamFailure } from '../upstream-errors.js'
import { apiFetch } from './api-fetch.js'

/*
 * Any OpenAI-compatible /v1/chat/completions server (Ollama, llama.cpp's
 * server, vLLM, LM Studio, OpenAI) through the official `openai` client
 * (SPEC §4.9). Its own retries are off: every upstream request is one
 * attempt of our policy. The same prompt as Gemini's: the persona's system
 * text as the `system` message, the turns as user/assistant messages.
 */

export interface OpenAiProviderOptions {
  baseUrl: string
  /** Unset: no Authorization header at all (local servers need none). */
  apiKey?: string
  model: string
  maxOutputTokens: number
  temperature: number
}

/** The reply is a normal one (`stop`), cut at max_tokens (`length`), or withheld by a filter. */
const FILTERED = 'content_filter'

/** A 200 answer that is no reply: an error object in the body or stream, or a stream that stopped short. */
class IncompleteAnswer extends Error {
  constructor (readonly code: string) {
    super(code)
    this.name = 'IncompleteAnswer'
  }
}

/**
 * The wait a 429 (or 503) asks for: OpenAI's `retry-after-ms`, else the
 * standard `Retry-After` in seconds or as an HTTP date. Hand-written: the
 * SDK parses these only inside its own retry loop, which is off.
 */
export function retryAfterMs (headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = Number(headers?.get('retry-after-ms') ?? NaN)
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms)
  const value = headers?.get('retry-after')?.trim()
  if (value === undefined || value === '') return undefined
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000)
  // An HTTP date has a day or month name; Date.parse would read "-3" as a year.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : NaN
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

export function classifyOpenAiError (error: unknown): UpstreamFailure {
  if (error instanceof IncompleteAnswer) return transportFailure(error.code)
  if (error instanceof APIConnectionError || error instanceof APIUserAbortError || !(error instanceof APIError)) return transportFailure()
  // The SDK throws an APIError without a status for an error object inside a 200 stream.
  if (error.status === undefined) return transportFailure('STREAM_ERROR')
  return httpFailure(error.status, { retryDelayMs: retryAfterMs(error.headers) })
}

function messages ({ system, turns }: ModelRequest): ChatCompletionMessageParam[] {
  // Consecutive parts of one turn become one message: many local chat
  // templates refuse two user messages in a row.
  return [
    { role: 'system', content: system },
    ...turns.map((turn): ChatCompletionMessageParam => ({
      role: turn.role === 'model' ? 'assistant' : 'user',
      content: turn.parts.map((part) => part.text).join('\n\n')
    }))
  ]
}

function readChoice (choice: { finish_reason?: string | null } | undefined, text: string | null | undefined): ModelChunk {
  const finishReason = choice?.finish_reason ?? undefined
  return { text: text ?? '', finishReason, filtered: finishReason === FILTERED }
}

export function createOpenAiProvider ({ baseUrl, apiKey, model, maxOutputTokens, temperature }: OpenAiProviderOptions): ModelProvider {
  const client = new OpenAI({
    baseURL: baseUrl,
    // The client refuses to start without a key; without ours it gets a
    // placeholder and the header is removed below, so none is ever sent.
    apiKey: apiKey ?? 'unused',
    ...(apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // Explicit, so that stray OPENAI_* variables of the environment change nothing.
    organization: null,
    project: null,
    adminAPIKey: null,
    maxRetries: 0,
    fetch: apiFetch,
    // The SDK's debug log would print requests, prompt included.
    logLevel: 'off'
  })
  const body = (request: ModelRequest) => ({ model, messages: messages(request), max_tokens: maxOutputTokens, temperature })

  return {
    name: 'openai',
    model,
    classify: classifyOpenAiError,

    async generate (request, signal) {
      const response = await client.chat.completions.create({ ...body(request), stream: false }, { signal })
      // A 200 with an error object (or nothing) instead of choices is no reply.
      const choice = response.choices?.[0]
      if (choice === undefined) throw new IncompleteAnswer('BAD_RESPONSE')
      return {
        ...readChoice(choice, choice.message?.content),
        inputTokens: response.usage?.prompt_tokens,
        outputTokens: response.usage?.completion_tokens
      }
    },

    async * stream (request, signal) {
      const chunks = await client.chat.completions.create(
        { ...body(request), stream: true, stream_options: { include_usage: true } }, { signal })
      let finished = false
      for await (const chunk of chunks as AsyncIterable<ChatCompletionChunk>) {
        const choice = chunk.choices?.[0]
        if (choice?.finish_reason != null) finished = true
        yield {
          ...readChoice(choice, choice?.delta?.content),
          inputTokens: chunk.usage?.prompt_tokens,
          outputTokens: chunk.usage?.completion_tokens
        }
      }
      // The SDK ends a stream quietly when it is aborted; and a server that
      // dies mid-reply may close the connection cleanly. Neither is a reply.
      if (signal.aborted) throw signal.reason
      if (!finished) throw new IncompleteAnswer('STREAM_ENDED')
    }
  }
}
