import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { apiFetch } from '../src/services/ai/providers/api-fetch.js'
import { startRedirectTarget } from './fake-server.js'

/*
 * The fetch both providers' SDKs are given (undici's request behind fetch's
 * signature), against a real loopback server: what the SDK tests do not
 * reach on their own (bodiless statuses, repeated headers, a stream read
 * while it is still being written, how each failure looks).
 */

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void

async function serve (t: Test, handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
    req.on('end', () => handler(req, body, res))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('sends method, headers and body; answers with status, status text, every header value and the body', async (t) => {
  const url = await serve(t, (req, body, res) => {
    res.writeHead(201, [['content-type', 'application/json'], ['x-seen', `${req.method} ${req.headers['x-goog-api-key']} ${body}`], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']])
    res.end('{"ok":true}')
  })
  const response = await apiFetch(`${url}/v1/x`, { method: 'POST', headers: new Headers({ 'x-goog-api-key': 'k1' }), body: '{"q":1}' })
  t.equal(response.status, 201)
  t.equal(response.statusText, 'Created')
  t.equal(response.ok, true)
  t.equal(response.headers.get('x-seen'), 'POST k1 {"q":1}')
  t.same(response.headers.getSetCookie(), ['a=1', 'b=2'])
  t.same(await response.json(), { ok: true })
})

t.test('an error status is an answer, not a failure; 204 has no body', async (t) => {
  const url = await serve(t, (req, _body, res) => {
    if (req.url === '/empty') res.writeHead(204).end()
    else res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '3' }).end('{"error":{"code":429}}')
  })
  const limited = await apiFetch(`${url}/limited`, { headers: { accept: 'application/json' } })
  t.equal(limited.status, 429)
  t.equal(limited.ok, false)
  t.equal(limited.headers.get('retry-after'), '3')
  t.equal(await limited.text(), '{"error":{"code":429}}')
  const empty = await apiFetch(`${url}/empty`)
  t.equal(empty.status, 204)
  t.equal(empty.body, null)
})

t.test('a server-sent event stream is readable while the server is still writing it', async (t) => {
  let finish: () => void = () => undefined
  const url = await serve(t, (_req, _body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    finish = () => res.end('data: two\n\n')
  })
  const response = await apiFetch(url)
  const reader = (response.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  const first = await reader.read()
  t.equal(decoder.decode(first.value), 'data: one\n\n', 'the first event before the stream ended')
  finish()
  let rest = ''
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += decoder.decode(chunk.value)
  t.equal(rest, 'data: two\n\n')
})

t.test('a redirect is refused, not followed: fetch failed, and the target is never asked', async (t) => {
  const target = await startRedirectTarget(t)
  const url = await serve(t, (_req, _body, res) => { res.writeHead(307, { location: target.url('/steal') }).end() })
  const error = await apiFetch(url, { headers: { 'x-goog-api-key': 'secret' } }).catch((error: unknown) => error)
  t.type(error, TypeError)
  t.equal((error as Error).message, 'fetch failed')
  t.equal(((error as Error).cause as Error).message, 'unexpected redirect (307)')
  t.same(target.received, [], 'nothing reached the redirect target, the key included')
})

t.test('an abort rejects with the signal\'s reason, before the answer and while its body is read', async (t) => {
  const url = await serve(t, (req, _body, res) => {
    if (req.url === '/body') res.writeHead(200, { 'content-length': '100' }).write('partial')
    // '/hang' never answers
  })
  const early = new AbortController()
  const hanging = apiFetch(`${url}/hang`, { signal: early.signal })
  setTimeout(() => early.abort(new Error('client gone')), 50)
  await t.rejects(hanging, { message: 'client gone' })

  const late = new AbortController()
  const reading = apiFetch(`${url}/body`, { signal: late.signal })
  setTimeout(() => late.abort(), 50)
  await t.rejects(reading, { name: 'AbortError' })
})

t.test('a connection refused is fetch failed, with the cause', async (t) => {
  // A port that was just free: nothing listens there any more.
  const closed = createServer().listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const { port } = closed.address() as AddressInfo
  closed.close()
  await once(closed, 'close')
  const error = await apiFetch(`http://127.0.0.1:${port}/`).catch((error: unknown) => error)
  t.type(error, TypeError)
  t.equal((error as Error).message, 'fetch failed')
  t.equal(((error as Error).cause as NodeJS.ErrnoException).code, 'ECONNREFUSED')
})

t.test('a Request object is refused: the SDKs pass a URL and options', async (t) => {
  await t.rejects(apiFetch(new Request('http://127.0.0.1:9/')), { name: 'TypeError', message: /takes a URL/ })
})
