import { GoogleGenAI, type GenerateContentConfig, type GenerateContentResponse } from '@google/genai'
import type { ModelRequest } from './prompt.js'

/*
 * The thin layer over @google/genai: one request in, plain fields out. The
 * SDK's own retries stay off (no `retryOptions`) and so does its automatic
 * stream continuation, so that every upstream request is one attempt of our
 * retry policy, bounded by our timeout and counted in our logs.
 */

/** One response, or one chunk of a streamed response. */
export interface ModelChunk {
  text: string
  finishReason?: string
  blockReason?: string
  inputTokens?: number
  outputTokens?: number
}

export interface GeminiClientOptions {
  apiKey: string
  model: string
  baseUrl?: string
}

export function createGeminiClient ({ apiKey, model, baseUrl }: GeminiClientOptions) {
  const ai = new GoogleGenAI({ apiKey, ...(baseUrl === undefined ? {} : { httpOptions: { baseUrl } }) })

  const params = (request: ModelRequest, signal: AbortSignal) => ({
    model,
    contents: request.contents,
    config: {
      systemInstruction: request.systemInstruction,
      abortSignal: signal,
      automaticContinuation: false
    } satisfies GenerateContentConfig
  })

  return {
    async generate (request: ModelRequest, signal: AbortSignal): Promise<ModelChunk> {
      return readChunk(await ai.models.generateContent(params(request, signal)))
    },

    async * stream (request: ModelRequest, signal: AbortSignal): AsyncGenerator<ModelChunk> {
      for await (const chunk of await ai.models.generateContentStream(params(request, signal))) {
        yield readChunk(chunk)
      }
    }
  }
}

export type GeminiClient = ReturnType<typeof createGeminiClient>

/** The first candidate's visible text (thought parts left out) and the fields our decisions need. */
function readChunk (response: GenerateContentResponse): ModelChunk {
  const candidate = response.candidates?.[0]
  let text = ''
  for (const part of candidate?.content?.parts ?? []) {
    if (part.thought !== true && typeof part.text === 'string') text += part.text
  }
  return {
    text,
    finishReason: candidate?.finishReason,
    blockReason: response.promptFeedback?.blockReason,
    inputTokens: response.usageMetadata?.promptTokenCount,
    outputTokens: response.usageMetadata?.candidatesTokenCount
  }
}
