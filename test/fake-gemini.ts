import type { ServerResponse } from 'node:http'
import { beforeAnswer, FAST_AI_ENV, startFakeApi, writeEvents, type EnvOverrides, type Recorded, type StepTiming, type StreamTiming } from './fake-server.js'

/*
 * A fake Gemini API on 127.0.0.1:0 speaking the REST dialect @google/genai
 * uses: POST /v1beta/models/<model>:generateContent and
 * :streamGenerateContent?alt=sse, Google's error bodies
 * `{ error: { code, message, status, details } }`. Each test scripts the
 * answers in order (then the default answer), and reads back what the
 * server received. The app under test talks to it through the real SDK.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface FakeStep extends StreamTiming, StepTiming {
  /** Reply text (split into `chunks` when streamed). */
  text?: string
  /** Streamed text, one SSE event each. */
  chunks?: string[]
  finishReason?: string
  /** promptFeedback.blockReason, with no candidates. */
  blockReason?: string
  /** An error status with this JSON body (or `raw` for a non-JSON page). */
  status?: number
  body?: unknown
  raw?: { contentType: string, body: string }
}

export interface RecordedRequest extends Recorded {
  model: string
  stream: boolean
  apiKey: string | undefined
  body: any
}

export const DEFAULT_REPLY = 'Hello from the fake Gemini.'

export const retryInfo = (retryDelay: string) => ({ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay })

export const quotaFailure = (quotaId: string) => ({
  '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
  violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests', quotaId }]
})

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED'
}

/** A Google API error answer. */
export const apiError = (code: number, details: unknown[] = [], message = `fake upstream error ${code}`): FakeStep =>
  ({ status: code, body: { error: { code, message, status: STATUS_NAMES[code] ?? 'UNKNOWN', details } } })

function responseBody (text: string, finishReason?: string) {
  return {
    candidates: [{ content: { role: 'model', parts: [{ text }] }, ...(finishReason === undefined ? {} : { finishReason }), index: 0 }],
    usageMetadata: { promptTokenCount: 42, candidatesTokenCount: 7, totalTokenCount: 49 },
    modelVersion: 'fake'
  }
}

export async function startFakeGemini (t: Test) {
  async function answer (step: FakeStep, record: RecordedRequest, res: ServerResponse): Promise<void> {
    if (!await beforeAnswer(step, res)) return
    if (step.raw !== undefined) {
      res.writeHead(step.status ?? 502, { 'content-type': step.raw.contentType }).end(step.raw.body)
      return
    }
    if (step.status !== undefined && step.status >= 400) {
      res.writeHead(step.status, { 'content-type': 'application/json; charset=UTF-8' }).end(JSON.stringify(step.body))
      return
    }
    const finishReason = step.finishReason ?? (step.blockReason === undefined ? 'STOP' : undefined)
    if (!record.stream) {
      const body = step.blockReason !== undefined
        ? { promptFeedback: { blockReason: step.blockReason }, modelVersion: 'fake' }
        : responseBody(step.text ?? DEFAULT_REPLY, finishReason)
      res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' }).end(JSON.stringify(body))
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    if (step.blockReason !== undefined) {
      res.end(`data: ${JSON.stringify({ promptFeedback: { blockReason: step.blockReason }, modelVersion: 'fake' })}\r\n\r\n`)
      return
    }
    const text = step.text ?? DEFAULT_REPLY
    const chunks = step.chunks ?? [text.slice(0, Math.ceil(text.length / 2)), text.slice(Math.ceil(text.length / 2))]
    const events = chunks.map((chunk, index) => JSON.stringify(responseBody(chunk, index === chunks.length - 1 ? finishReason : undefined)))
    if (await writeEvents(res, events, step)) res.end()
  }

  return startFakeApi<FakeStep, RecordedRequest>(t, {
    record (req, raw) {
      const match = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)(\?.*)?$/.exec(req.url ?? '')
      if (req.method !== 'POST' || match === null) return undefined
      return {
        model: match[1],
        stream: match[2] === 'streamGenerateContent',
        apiKey: req.headers['x-goog-api-key'] as string | undefined,
        body: JSON.parse(raw),
        abandoned: false
      }
    },
    notFound: (res) => res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 404, message: 'no such fake route', status: 'NOT_FOUND' } })),
    answer
  }, { text: DEFAULT_REPLY })
}

export type FakeGemini = Awaited<ReturnType<typeof startFakeGemini>>

/**
 * App configuration pointing the real SDK at the fake, with fast retries
 * and limits that never interfere (each test overrides what it exercises).
 */
export function aiEnv (fake: FakeGemini, overrides: EnvOverrides = {}): EnvOverrides {
  return { GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: fake.url, ...FAST_AI_ENV, ...overrides }
}
