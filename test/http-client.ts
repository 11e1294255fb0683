import { once } from 'node:events'
import { request, type IncomingMessage } from 'node:http'

/* HTTP clients of the AI routes for tests against a listening server: JSON, Server-Sent Events, a raw request to hang up on. */

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal })

export const SSE = { accept: 'text/event-stream' }

/** `event: x\ndata: {…}\n\n` frames → [{ event, data }]. */
export function parseEvents (text: string): Array<{ event: string, data: any }> {
  return text.split('\n\n').filter(Boolean).map((frame) => {
    const [eventLine, dataLine, ...rest] = frame.split('\n')
    if (!eventLine.startsWith('event: ') || !dataLine.startsWith('data: ') || rest.length > 0) throw new Error(`bad frame: ${frame}`)
    return { event: eventLine.slice(7), data: JSON.parse(dataLine.slice(6)) }
  })
}

/**
 * A raw POST without keep-alive, so that destroying it is exactly one socket
 * closing (an aborted fetch makes undici open a spare idle connection).
 */
export function rawPost (url: string, body: unknown, headers: Record<string, string> = {}) {
  const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } })
  req.on('error', () => {}) // destroyed on purpose
  req.end(JSON.stringify(body))
  const response = once(req, 'response').then(([response]) => response as IncomingMessage)
  response.catch(() => {}) // not awaited when the test destroys the request first
  return { req, response }
}
