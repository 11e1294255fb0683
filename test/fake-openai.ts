import type { ServerResponse } from 'node:http'
import { beforeAnswer, FAST_AI_ENV, startFakeApi, writeEvents, type EnvOverrides, type Recorded, type StepTiming, type StreamTiming } from './fake-server.js'

/*
 * A fake OpenAI-compatible API on 127.0.0.1:0 (what Ollama, llama.cpp's
 * server, vLLM and OpenAI itself speak): POST /v1/chat/completions, a JSON
 * completion or, with `stream: true`, Server-Sent Events of
 * chat.completion.chunk objects, the usage chunk when
 * `stream_options.include_usage` asks for it, then `data: [DONE]`. Errors as
 * `{ error: { message, type, code } }` with any headers (Retry-After). Each
 * test scripts the answers in order and reads back what the server received;
 * the app under test talks to it through the real `openai` client.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface OpenAiStep extends StreamTiming, StepTiming {
  /** Reply text (split into `chunks` when streamed). */
  text?: string
  /** Streamed text, one SSE event each. */
  chunks?: string[]
  /** `stop` unless given; null: the stream never says why it ended. */
  finishReason?: string | null
  /** An error answer with this status, body and headers. */
  status?: number
  body?: unknown
  headers?: Record<string, string>
  /** A 200 JSON body other than a completion (e.g. an error object). */
  okBody?: unknown
  /** Streamed: an error object in place of this chunk, then the stream ends (as Ollama does when a model fails). */
  errorAtChunk?: number
}

export interface OpenAiRequest extends Recorded {
  model: string
  stream: boolean
  /** The Authorization header as it arrived. */
  authorization: string | undefined
  body: any
  /** Date.now() when the request had arrived whole (for retry timing). */
  at: number
}

export const OPENAI_REPLY = 'Hello from the fake OpenAI-compatible server.'
export const OPENAI_MODEL = 'llama3.2:3b'
export const USAGE = { prompt_tokens: 42, completion_tokens: 7, total_tokens: 49 }

/** An OpenAI-style error answer. */
export const openAiError = (status: number, headers: Record<string, string> = {}, message = `fake upstream error ${status}`): OpenAiStep =>
  ({ status, headers, body: { error: { message, type: status === 429 ? 'rate_limit_error' : 'invalid_request_error', code: null } } })

const meta = (object: string) => ({ id: 'chatcmpl-fake', object, created: 1767225600, model: OPENAI_MODEL })

const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
  JSON.stringify({ ...meta('chat.completion.chunk'), choices: [{ index: 0, delta, finish_reason: finishReason }] })

export async function startFakeOpenAi (t: Test) {
  async function answer (step: OpenAiStep, record: OpenAiRequest, res: ServerResponse): Promise<void> {
    if (!await beforeAnswer(step, res)) return
    if (step.status !== undefined && step.status >= 400) {
      res.writeHead(step.status, { 'content-type': 'application/json', ...step.headers }).end(JSON.stringify(step.body))
      return
    }
    const text = step.text ?? OPENAI_REPLY
    const finishReason = step.finishReason === undefined ? 'stop' : step.finishReason
    if (!record.stream) {
      const body = step.okBody ?? {
        ...meta('chat.completion'),
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: finishReason }],
        usage: USAGE
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      return
    }
    const texts = step.chunks ?? [text.slice(0, Math.ceil(text.length / 2)), text.slice(Math.ceil(text.length / 2))]
    const events = texts.map((piece, index) => index === step.errorAtChunk
      ? JSON.stringify({ error: { message: 'fake model failure', type: 'server_error' } })
      : chunk(index === 0 ? { role: 'assistant', content: piece } : { content: piece }))
    if (step.errorAtChunk !== undefined) events.splice(step.errorAtChunk + 1)
    else {
      if (finishReason !== null) events.push(chunk({}, finishReason))
      if (record.body.stream_options?.include_usage === true) events.push(JSON.stringify({ ...meta('chat.completion.chunk'), choices: [], usage: USAGE }))
      events.push('[DONE]')
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    if (await writeEvents(res, events, step)) res.end()
  }

  return startFakeApi<OpenAiStep, OpenAiRequest>(t, {
    record (req, raw) {
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return undefined
      const body = JSON.parse(raw)
      return { model: body.model, stream: body.stream === true, authorization: req.headers.authorization, body, at: Date.now(), abandoned: false }
    },
    notFound: (res) => res.writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: { message: 'no such fake route', type: 'invalid_request_error', code: 'not_found' } })),
    answer
  }, { text: OPENAI_REPLY })
}

export type FakeOpenAi = Awaited<ReturnType<typeof startFakeOpenAi>>

/** App configuration pointing the real `openai` client at the fake (provider derived from OPENAI_BASE_URL). */
export function openAiEnv (fake: FakeOpenAi, overrides: EnvOverrides = {}): EnvOverrides {
  return { OPENAI_BASE_URL: `${fake.url}/v1`, OPENAI_MODEL, ...FAST_AI_ENV, ...overrides }
}
