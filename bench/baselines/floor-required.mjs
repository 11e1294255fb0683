// The same-work floor plus what SPEC §2.3, §5 and §6 require of the sessions
// route on top of it, each part written directly, with nothing of ours: a
// random request id in its header and log line, a fixed-window rate limit
// and its three headers, the id checked against its pattern, the session
// looked up and its JSON (three timestamps) serialised per request, the
// not-found body naming the id, and the CORS origin check. It leaves out what
// SPEC asks of every request besides (the slow-down, metrics, the line of an
// aborted request, per-address connection caps), so it is a lower bound:
// how much of the floor the required work alone takes.
import { randomUUID } from 'node:crypto'
import { HEADERS, NOT_FOUND_BODY, SESSION_BODY, SESSION_ID } from './common.mjs'
import { floorApp } from './floor-app.mjs'

const RATE_LIMIT = 1_000_000_000
const WINDOW_MS = 15 * 60 * 1000
const DAY_MS = 24 * 60 * 60 * 1000

/** Our headers without the per-request ones, which are set here. */
const staticHeaders = Object.fromEntries(Object.entries(HEADERS)
  .filter(([name]) => name !== 'x-request-id' && !name.startsWith('ratelimit-')))

/** The current window's count per client address. */
const windows = new Map()
function countRequest (ip, now) {
  let window = windows.get(ip)
  if (window === undefined || window.resetAt <= now) {
    window = { count: 0, resetAt: now + WINDOW_MS }
    windows.set(ip, window)
  }
  window.count++
  return window
}

const captured = JSON.parse(SESSION_BODY)
const sessions = new Map([[SESSION_ID, {
  ...captured,
  createdAt: Date.parse(captured.createdAt),
  lastActivity: Date.parse(captured.lastActivity),
  expiresAt: Date.now() + DAY_MS
}]])
const notFound = JSON.parse(NOT_FOUND_BODY)

const { app, start } = floorApp({ genReqId: () => randomUUID() })
app.addHook('onRequest', (request, reply, done) => {
  reply.headers(staticHeaders)
  reply.header('x-request-id', request.id)
  const origin = request.headers.origin
  if (origin !== undefined) reply.header('access-control-allow-origin', origin)
  const now = Date.now()
  const window = countRequest(request.ip, now)
  reply.header('ratelimit-limit', RATE_LIMIT)
  reply.header('ratelimit-remaining', Math.max(0, RATE_LIMIT - window.count))
  reply.header('ratelimit-reset', Math.ceil((window.resetAt - now) / 1000))
  done()
})

const string = { type: 'string' }
const integer = { type: 'integer' }
const boolean = { type: 'boolean' }
app.get('/api/sessions/:id', {
  schema: {
    params: { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,128}$' } }, required: ['id'] },
    response: {
      200: {
        type: 'object',
        properties: {
          sessionId: string,
          kind: string,
          isActive: boolean,
          participantCount: integer,
          messageCount: integer,
          createdAt: string,
          lastActivity: string,
          expiresAt: string,
          companionName: string
        }
      },
      404: {
        type: 'object',
        properties: { sessionId: string, isActive: boolean, participantCount: integer, error: string, code: string, statusCode: integer }
      }
    }
  }
}, async (request, reply) => {
  const session = sessions.get(request.params.id)
  if (session === undefined || session.expiresAt <= Date.now()) {
    return reply.code(404).send({ ...notFound, sessionId: request.params.id })
  }
  return {
    ...session,
    createdAt: new Date(session.createdAt).toISOString(),
    lastActivity: new Date(session.lastActivity).toISOString(),
    expiresAt: new Date(session.expiresAt).toISOString()
  }
})

await start()
