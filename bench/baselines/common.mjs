// What every baseline answers, so that they do the same work as our server:
// the same JSON bodies (captured from our server by bench/run.mjs and passed
// in the environment), the same Gemini call through the same SDK, and the
// same requests.log line fields.
import { GoogleGenAI } from '@google/genai'

export const SESSION_BODY = process.env.BENCH_SESSION ?? '{}'
export const SESSION_ID = process.env.BENCH_SESSION_ID ?? 'none'
export const NOT_FOUND_BODY = process.env.BENCH_NOT_FOUND ?? '{}'
/** Our response headers, minus the per-response ones each server sets itself. */
export const HEADERS = JSON.parse(process.env.BENCH_HEADERS ?? '{}')
export const LOG_FILE = process.env.BENCH_LOG_FILE ?? '/dev/null'

export const healthBody = () => ({
  status: 'healthy',
  timestamp: new Date().toISOString(),
  version: '1.0.0',
  uptime: { seconds: Math.floor(process.uptime()), minutes: 0, hours: 0, days: 0 },
  memory: { rssMB: Math.round(process.memoryUsage.rss() / 1048576), heapUsedMB: 0 }
})

// BENCH_OUR_FETCH: the SDK gets our server's fetch (dist/, built by `npm run bench`) instead of Node's.
const sdkFetch = process.env.BENCH_OUR_FETCH === undefined ? {} : { fetch: (await import('../../dist/services/ai/providers/api-fetch.js')).apiFetch }
const gemini = new GoogleGenAI({ apiKey: 'bench-key', httpOptions: { ...sdkFetch, baseUrl: process.env.GEMINI_BASE_URL ?? 'http://127.0.0.1:9' } })
const model = process.env.GEMINI_MODEL ?? 'gemini-2.5-flash'

/**
 * Our server's upstream request as the fake Gemini last received it (captured
 * by bench/lib/servers.mjs after a conversation longer than the context):
 * the system instruction, the conversation so far and the generation config.
 */
const SAME_REQUEST = process.env.BENCH_CHAT_SAME_REQUEST === undefined ? undefined : JSON.parse(process.env.BENCH_CHAT_SAME_REQUEST)

/** What goes upstream: the user's message alone, or (BENCH_CHAT_SAME_REQUEST) in the same request as ours. */
function upstreamRequest (message) {
  const text = String(message ?? '')
  if (SAME_REQUEST === undefined) return { model, contents: [{ role: 'user', parts: [{ text }] }] }
  const { contents, systemInstruction, generationConfig } = SAME_REQUEST
  return { model, contents: [...contents.slice(0, -1), { role: 'user', parts: [{ text }] }], config: { systemInstruction, ...generationConfig } }
}

/** One chat turn: the user's message to the fake Gemini through @google/genai. */
export async function chat (body) {
  const answer = await gemini.models.generateContent(upstreamRequest(body?.message))
  return { sessionId: String(body?.sessionId ?? ''), message: answer.text, companionName: 'Ava', timestamp: new Date().toISOString(), fallback: false }
}

/** Fastify handler of GET /api/sessions/:id: our captured 200 or 404 body. */
export async function sessionHandler (request, reply) {
  reply.type('application/json; charset=utf-8')
  if (request.params.id === SESSION_ID) return SESSION_BODY
  return reply.code(404).send(NOT_FOUND_BODY)
}

/** The fields of our requests.log line (SPEC §7). */
export const requestLine = (reqId, method, route, path, status, responseTimeMs, ip, userAgent) =>
  ({ reqId, method, route, path, status, responseTimeMs, ip, userAgent: userAgent ?? null })

export function ready (port) {
  process.stdout.write(`{"port":${port},"msg":"ready"}\n`)
}

export const onSignal = (close) => {
  for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => { Promise.resolve(close()).finally(() => process.exit(0)) })
}
