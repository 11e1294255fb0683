// The fake Gemini for the benchmarks: the REST answer @google/genai expects
// from POST /v1beta/models/<model>:generateContent, after BENCH_LATENCY_MS.
// test/fake-gemini.ts scripts answers and records every request for tests;
// this one only answers (keeping the last request body, nothing more), so
// it stays flat over a soak of a million calls.
import { createServer } from 'node:http'
import { ready } from './common.mjs'

const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 0)
const answer = JSON.stringify({
  candidates: [{ content: { role: 'model', parts: [{ text: 'Hello from the fake Gemini.' }] }, finishReason: 'STOP', index: 0 }],
  usageMetadata: { promptTokenCount: 42, candidatesTokenCount: 7, totalTokenCount: 49 },
  modelVersion: 'fake'
})
const headers = { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(answer) }

// The last request body only (so it stays flat): the bench reads it once to
// give the "same request" baseline exactly what our server sends upstream.
let lastRequest = '{}'

const server = createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/last-request') {
    response.writeHead(200, { 'content-type': 'application/json' }).end(lastRequest)
    return
  }
  const chunks = []
  request.on('data', (chunk) => chunks.push(chunk))
  request.on('end', () => {
    lastRequest = Buffer.concat(chunks).toString()
    const send = () => { response.writeHead(200, headers).end(answer) }
    if (latencyMs > 0) setTimeout(send, latencyMs)
    else send()
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => ready(server.address().port))
process.once('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)) })
