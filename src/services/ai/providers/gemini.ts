import { GoogleGenAI, type GenerateContentConfig, type GenerateContentResponse } from '@google/genai'
import type { ModelChunk, ModelProvider, ModelRequest } from '../provider.js'
import { apiFetch } from './api-fetch.js'
import { classifyGeminiError } from './gemini-errors.js'

/*
 * Gemini through @google/genai (SPEC §4.1, §4.10): one request in, plain
 * fields out. The SDK's own retries stay off (no `retryOptions`) and so does
 * its automatic stream continuation, so that every upstream request is one
 * attempt of our retry policy, bounded by our timeout and counted in our logs.
 */

export interface GeminiProviderOptions {
  apiKey: string
  model: string
  baseUrl?: string
  maxOutputTokens: number
  temperature: number
  /** GEMINI_THINKING_BUDGET as configured; see thinkingBudget(). */
  thinkingBudget: number
}

// Finish reasons of a complete reply. Any other (SAFETY, PROHIBITED_CONTENT,
// BLOCKLIST, SPII, RECITATION, …) means a filter withheld or cut the reply.
const NORMAL_FINISH = new Set(['STOP', 'MAX_TOKENS', 'FINISH_REASON_UNSPECIFIED'])

/** Models that cannot turn thinking off (SPEC §4.10): 0 is refused by the API. */
const ALWAYS_THINKS = /^gemini-2\.5-pro/
/** The smallest budget such a model accepts. */
export const MIN_THINKING_BUDGET = 128

/** The budget sent: the configured one, or the smallest possible where 0 is impossible. */
export function thinkingBudget (model: string, configured: number): number {
  return configured === 0 && ALWAYS_THINKS.test(model) ? MIN_THINKING_BUDGET : configured
}

export function createGeminiProvider (options: GeminiProviderOptions): ModelProvider {
  const { apiKey, model, baseUrl, maxOutputTokens, temperature } = options
  const ai = new GoogleGenAI({ apiKey, httpOptions: { fetch: apiFetch, ...(baseUrl === undefined ? {} : { baseUrl }) } })
  const generation = { maxOutputTokens, temperature, thinkingConfig: { thinkingBudget: thinkingBudget(model, options.thinkingBudget) } }

  const params = (request: ModelRequest, signal: AbortSignal) => ({
    model,
    contents: request.turns,
    config: {
      systemInstruction: request.system,
      ...generation,
      abortSignal: signal,
      automaticContinuation: false
    } satisfies GenerateContentConfig
  })

  return {
    name: 'gemini',
    model,
    classify: classifyGeminiError,

    async generate (request, signal) {
      return readChunk(await ai.models.generateContent(params(request, signal)))
    },

    async * stream (request, signal) {
      for await (const chunk of await ai.models.generateContentStream(params(request, signal))) {
        yield readChunk(chunk)
      }
    }
  }
}

/** The first candidate's visible text (thought parts left out) and the fields our decisions need. */
function readChunk (response: GenerateContentResponse): ModelChunk {
  const candidate = response.candidates?.[0]
  let text = ''
  for (const part of candidate?.content?.parts ?? []) {
    if (part.thought !== true && typeof part.text === 'string') text += part.text
  }
  const finishReason = candidate?.finishReason
  return {
    text,
    finishReason,
    blockReason: response.promptFeedback?.blockReason,
    filtered: finishReason !== undefined && !NORMAL_FINISH.has(finishReason),
    inputTokens: response.usageMetadata?.promptTokenCount,
    outputTokens: response.usageMetadata?.candidatesTokenCount
  }
}
