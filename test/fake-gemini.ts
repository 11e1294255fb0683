import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from '../src/config.js'
import { NO_LIMITS } from './helper.js'

/*
 * A fake Gemini API on 127.0.0.1:0 speaking the REST dialect @google/genai
 * uses: POST /v1beta/models/<model>:generateContent and
 * :streamGenerateContent?alt=sse, Google's error bodies
 * `{ error: { code, message, status, details } }`. Each test scripts the
 * answers in order (then the default answer), and reads back what the
 * server received. The app under test talks to it through the real SDK.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface FakeStep {
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
  delayMs?: number
  /** Never answer (until the caller gives up). */
  hang?: boolean
  /** Streamed: destroy the connection after this many chunks. */
  breakAfterChunks?: number
  chunkDelayMs?: number
}

export interface RecordedRequest {
  model: string
  stream: boolean
  apiKey: string | undefined
  body: any
  /** The caller closed the connection before the answer was complete. */
  abandoned: boolean
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
  const script: FakeStep[] = []
  const requests: RecordedRequest[] = []
  let defaultStep: FakeStep = { text: DEFAULT_REPLY }
  let inFlight = 0
  let maxInFlight = 0
  const waiters: Array<() => void> = []

  async function answer (step: FakeStep, stream: boolean, res: ServerResponse): Promise<void> {
    if (step.hang === true) return
    if (step.delayMs !== undefined) await sleep(step.delayMs)
    if (res.destroyed) return
    if (step.raw !== undefined) {
      res.writeHead(step.status ?? 502, { 'content-type': step.raw.contentType }).end(step.raw.body)
      return
    }
    if (step.status !== undefined && step.status >= 400) {
      res.writeHead(step.status, { 'content-type': 'application/json; charset=UTF-8' }).end(JSON.stringify(step.body))
      return
    }
    const finishReason = step.finishReason ?? (step.blockReason === undefined ? 'STOP' : undefined)
    if (!stream) {
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
    for (const [index, chunk] of chunks.entries()) {
      if (index === step.breakAfterChunks) {
        // Let the chunks already written reach the caller before the connection breaks.
        await sleep(30)
        res.destroy()
        return
      }
      const last = index === chunks.length - 1
      await new Promise((resolve) => res.write(`data: ${JSON.stringify(responseBody(chunk, last ? finishReason : undefined))}\r\n\r\n`, resolve))
      if (step.chunkDelayMs !== undefined) await sleep(step.chunkDelayMs)
      if (res.destroyed) return
    }
    res.end()
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)(\?.*)?$/.exec(req.url ?? '')
    if (req.method !== 'POST' || match === null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 404, message: 'no such fake route', status: 'NOT_FOUND' } }))
      return
    }
    let raw = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { raw += chunk })
    req.on('end', () => {
      const record: RecordedRequest = {
        model: match[1],
        stream: match[2] === 'streamGenerateContent',
        apiKey: req.headers['x-goog-api-key'] as string | undefined,
        body: JSON.parse(raw),
        abandoned: false
      }
      requests.push(record)
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      res.on('close', () => {
        inFlight--
        if (!res.writableFinished) record.abandoned = true
      })
      waiters.splice(0).forEach((wake) => wake())
      answer(script.shift() ?? defaultStep, record.stream, res).catch(() => res.destroy())
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    /** Answers for the next requests, in order; afterwards the default answer. */
    script: (...steps: FakeStep[]) => { script.push(...steps) },
    setDefault: (step: FakeStep) => { defaultStep = step },
    get inFlight () { return inFlight },
    get maxInFlight () { return maxInFlight },
    /** Resolves once `count` requests have arrived in total. */
    async waitForRequests (count: number, timeoutMs = 5000): Promise<void> {
      const deadline = Date.now() + timeoutMs
      while (requests.length < count) {
        if (Date.now() > deadline) throw new Error(`fake Gemini got ${requests.length} of ${count} requests`)
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(50)])
      }
    }
  }
}

export type FakeGemini = Awaited<ReturnType<typeof startFakeGemini>>

type EnvOverrides = Partial<Record<keyof Config, string | number>>

/**
 * App configuration pointing the real SDK at the fake, with fast retries
 * and limits that never interfere (each test overrides what it exercises).
 */
export function aiEnv (fake: FakeGemini, overrides: EnvOverrides = {}): EnvOverrides {
  return {
    GEMINI_API_KEY: 'test-key',
    GEMINI_BASE_URL: fake.url,
    AI_RETRY_BASE_MS: 10,
    AI_TIMEOUT_MS: 3000,
    ...NO_LIMITS,
    ...overrides
  }
}
