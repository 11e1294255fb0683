import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import t, { type Test } from 'tap'
import type { App } from '../src/app.js'
import { SERVICE_NAME, VERSION } from '../src/version.js'
import { buildTestApp, persona as companionConfig, startServer } from './helper.js'

/*
 * SPEC §5 rate limits through the whole app. The slow-down is switched off
 * here (SLOW_DOWN_DELAY_MS=0) so counting is fast; test/slow-down.test.ts
 * covers the delays.
 *
 * `ratelimit-reset` and `retry-after` are ceil(ttl / 1000): they drop by one
 * for every second the window has run, and a loaded machine can take seconds
 * over a hundred requests. So they are checked against a range: the window's
 * length, minus the whole seconds elapsed since just before it opened.
 */

const NO_DELAY = { SLOW_DOWN_DELAY_MS: 0 }
const AI_ROUTE = '/api/ai-companion/limit-probe'

/** A test-only route that opts into the AI limit the way the companion routes do. */
const withAiRoute = (app: App) => {
  app.get(AI_ROUTE, { config: { aiRateLimit: true } }, async () => ({ ok: true }))
}

const get = (app: App, url: string, remoteAddress = '203.0.113.1', headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url, remoteAddress, headers })

const refusal = (seconds: number) => ({
  error: `Too many requests, retry after ${seconds} s`,
  code: 'RATE_LIMITED',
  statusCode: 429,
  retryAfter: seconds
})

interface Window {
  limit: number
  remaining: number
  /** Length of the window in seconds. */
  seconds: number
  /** Date.now() from just before the window's first request. */
  since: number
  /** At most this many seconds left (a window known to be older). */
  atMost?: number
}

/** The limit headers of an answered request (no Retry-After) or, with `refused`, of a refusal. */
function checkLimit (t: Test, headers: IncomingHttpHeaders | OutgoingHttpHeaders, window: Window, refused = false, what = 'limit headers') {
  t.same([headers['ratelimit-limit'], headers['ratelimit-remaining']], [String(window.limit), String(window.remaining)], `${what}: limit, remaining`)
  const reset = Number(headers['ratelimit-reset'])
  const high = window.atMost ?? window.seconds
  const low = window.seconds - Math.ceil((Date.now() - window.since) / 1000)
  t.ok(Number.isInteger(reset) && reset >= low && reset <= high, `${what}: ratelimit-reset ${String(headers['ratelimit-reset'])} within [${low}, ${high}]`)
  t.equal(headers['retry-after'], refused ? headers['ratelimit-reset'] : undefined, `${what}: retry-after ${refused ? 'is the reset' : 'only on a refusal'}`)
}

/** A 429 in the SPEC §2 shape whose retryAfter is the Retry-After header. */
function checkRefusal (t: Test, response: { statusCode: number, headers: OutgoingHttpHeaders, json: () => any }, window: Window, what = 'refused') {
  t.equal(response.statusCode, 429, what)
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.same(response.json(), refusal(Number(response.headers['retry-after'])), `${what}: the body names the Retry-After seconds`)
  checkLimit(t, response.headers, window, true, what)
}

t.test('defaults: the 101st request in 15 minutes is refused, across /api routes and unknown URLs', async (t) => {
  const app = await buildTestApp(t, NO_DELAY)
  const since = Date.now()
  const window = (remaining: number) => ({ limit: 100, remaining, seconds: 900, since })

  const first = await get(app, '/api/no-such-route')
  t.equal(first.statusCode, 404)
  checkLimit(t, first.headers, window(99))

  for (let n = 2; n <= 99; n++) {
    const response = await get(app, n % 2 === 0 ? '/api/other' : '/wp-login.php')
    t.equal(response.headers['ratelimit-remaining'], String(100 - n), `request ${n} counted`)
  }
  const hundredth = await get(app, '/')
  t.equal(hundredth.statusCode, 200, 'a known route shares the same budget')
  checkLimit(t, hundredth.headers, window(0))

  for (const url of ['/', '/api/no-such-route']) checkRefusal(t, await get(app, url), window(0), `${url} refused`)

  const other = await get(app, '/api/no-such-route', '203.0.113.2')
  t.equal(other.statusCode, 404, 'another client has its own budget')
  t.equal(other.headers['ratelimit-remaining'], '99')
})

t.test('defaults: the 11th AI request in a minute is refused; AI requests also count against the general limit', async (t) => {
  const app = await buildTestApp(t, NO_DELAY, withAiRoute)
  const since = Date.now()

  for (let n = 1; n <= 10; n++) {
    const response = await get(app, AI_ROUTE)
    t.equal(response.statusCode, 200)
    // Both limits apply; the headers describe the AI one, which is closer to refusing.
    checkLimit(t, response.headers, { limit: 10, remaining: 10 - n, seconds: 60, since }, false, `AI request ${n}`)
  }
  checkRefusal(t, await get(app, AI_ROUTE), { limit: 10, remaining: 0, seconds: 60, since })

  const general = await get(app, '/')
  t.equal(general.statusCode, 200, 'the general limit is not exhausted')
  checkLimit(t, general.headers, { limit: 100, remaining: 88, seconds: 900, since }, false, '11 AI requests + this one')

  const other = await get(app, AI_ROUTE, '203.0.113.2')
  t.equal(other.statusCode, 200, 'another client has its own AI budget')
  t.equal(other.headers['ratelimit-remaining'], '9')
})

t.test('the companion routes opt into the AI limit and share one AI budget', async (t) => {
  const app = await buildTestApp(t, { ...NO_DELAY, AI_RATE_LIMIT_MAX: 3 }) // no GEMINI_API_KEY: offline replies
  const post = (url: string, payload: object) =>
    app.inject({ method: 'POST', url, payload, remoteAddress: '203.0.113.1' })
  const since = Date.now()

  const initialized = await post('/api/ai-companion/initialize', { companionConfig })
  t.equal(initialized.statusCode, 200)
  checkLimit(t, initialized.headers, { limit: 3, remaining: 2, seconds: 60, since })
  const chat = await post('/api/ai-companion/chat', { message: 'hello', sessionId: initialized.json().sessionId })
  t.equal(chat.statusCode, 200)
  t.equal(chat.headers['ratelimit-remaining'], '1', 'chat and initialize count against the same AI budget')
  t.equal((await post('/api/ai-companion/chat', { message: 'hello', companionConfig })).statusCode, 200)

  checkRefusal(t, await post('/api/ai-companion/initialize', { companionConfig }), { limit: 3, remaining: 0, seconds: 60, since })

  const session = await get(app, `/api/sessions/${initialized.json().sessionId as string}`)
  t.equal(session.statusCode, 200, 'other /api routes are under the general limit only')
  checkLimit(t, session.headers, { limit: 100, remaining: 95, seconds: 900, since })
})

t.test('configured values: limits refuse at their max and allow again after the window', async (t) => {
  // A 2 s general window: long enough that four requests fit in it on a loaded machine.
  const app = await buildTestApp(t, {
    ...NO_DELAY, RATE_LIMIT_MAX: 3, RATE_LIMIT_WINDOW_MS: 2000, AI_RATE_LIMIT_MAX: 5, AI_RATE_LIMIT_WINDOW_MS: 60000
  }, withAiRoute)
  const since = Date.now()

  // The general limit (3) is tighter than the AI one (5) here, so its headers are shown.
  for (let n = 1; n <= 3; n++) {
    const response = await get(app, AI_ROUTE)
    t.equal(response.statusCode, 200)
    checkLimit(t, response.headers, { limit: 3, remaining: 3 - n, seconds: 2, since }, false, `request ${n}`)
  }
  checkRefusal(t, await get(app, AI_ROUTE), { limit: 3, remaining: 0, seconds: 2, since }, 'refused by the general limit')

  await new Promise((resolve) => setTimeout(resolve, 2100))
  const again = await get(app, AI_ROUTE)
  t.equal(again.statusCode, 200, 'a new general window')
  // General: 1 of 3 used; AI: 4 of 5 used (the general refusal did not reach it),
  // in an AI window more than 2 s old.
  checkLimit(t, again.headers, { limit: 5, remaining: 1, seconds: 60, since, atMost: 58 }, false, 'the AI limit')
})

t.test('health probes are never limited, slowed or counted', async (t) => {
  const app = await buildTestApp(t, {
    RATE_LIMIT_MAX: 2, SLOW_DOWN_AFTER: 1, SLOW_DOWN_DELAY_MS: 5000, SLOW_DOWN_MAX_DELAY_MS: 5000
  })
  const started = performance.now()
  const probes = await Promise.all(Array.from({ length: 300 }, (_, i) =>
    get(app, ['/health', '/health/live', '/health/ready'][i % 3] as string)))
  const elapsed = performance.now() - started
  t.same(probes.map((probe) => probe.statusCode), Array(300).fill(200), '300 probes answered 200')
  t.same(probes.filter((probe) => probe.headers['ratelimit-limit'] !== undefined), [], 'no limit headers on probes')
  t.ok(elapsed < 5000, `no probe waited for the slow-down (${Math.round(elapsed)} ms for all)`)

  const api = await get(app, '/api/no-such-route')
  t.equal(api.statusCode, 404)
  t.equal(api.headers['ratelimit-remaining'], '1', 'the probes used none of the budget')
})

t.test('the docs are registered before the limiter and are not limited', async (t) => {
  const app = await buildTestApp(t, { ...NO_DELAY, RATE_LIMIT_MAX: 1 })
  await get(app, '/')
  const docs = await get(app, '/docs/json')
  t.equal(docs.statusCode, 200)
  t.equal(docs.headers['ratelimit-limit'], undefined)
})

t.test('without TRUST_PROXY a forged X-Forwarded-For changes nothing', async (t) => {
  const app = await buildTestApp(t, { ...NO_DELAY, RATE_LIMIT_MAX: 2 })
  const statuses = []
  for (const forged of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) {
    statuses.push((await get(app, '/', '10.0.0.1', { 'x-forwarded-for': forged })).statusCode)
  }
  t.same(statuses, [200, 200, 429], 'counted by the socket address')
})

t.test('TRUST_PROXY as a list: each user behind the load balancer has their own counter', async (t) => {
  const app = await buildTestApp(t, { ...NO_DELAY, RATE_LIMIT_MAX: 2, TRUST_PROXY: '10.0.0.1' })
  const lb = '10.0.0.1'
  const statuses = async (remote: string, forwarded: string[]) => {
    const result = []
    for (const header of forwarded) result.push((await get(app, '/', remote, { 'x-forwarded-for': header })).statusCode)
    return result
  }
  t.same(await statuses(lb, ['203.0.113.7', '203.0.113.7', '203.0.113.7']), [200, 200, 429], 'one user')
  t.same(await statuses(lb, ['203.0.113.8', '203.0.113.8']), [200, 200], 'another user, own counter')
  // The proxy appends the address it saw; what the client put in front is not believed.
  t.same(await statuses(lb, ['1.1.1.1, 203.0.113.9', '2.2.2.2, 203.0.113.9', '3.3.3.3, 203.0.113.9']), [200, 200, 429],
    'forged left-most entries do not make new clients')
  t.same(await statuses('10.0.0.9', ['203.0.113.10', '203.0.113.11', '203.0.113.12']), [200, 200, 429],
    'a header from an address that is not the load balancer is ignored')
})

t.test('TRUST_PROXY=true: the left-most X-Forwarded-For is the client', async (t) => {
  const app = await buildTestApp(t, { ...NO_DELAY, RATE_LIMIT_MAX: 1, TRUST_PROXY: 'true' })
  t.equal((await get(app, '/', '10.0.0.1', { 'x-forwarded-for': '203.0.113.7' })).statusCode, 200)
  t.equal((await get(app, '/', '10.0.0.1', { 'x-forwarded-for': '203.0.113.8' })).statusCode, 200)
  t.equal((await get(app, '/', '10.0.0.1', { 'x-forwarded-for': '203.0.113.7' })).statusCode, 429)
})

t.test('two clients with different source addresses are counted separately', async (t) => {
  const { port } = await startServer(t, { ...NO_DELAY, RATE_LIMIT_MAX: 2 })
  // Linux loopback accepts any 127/8 source address: two real clients on one machine.
  const from = (localAddress: string) => new Promise<{ status: number, remaining: unknown, body: unknown, headers: IncomingHttpHeaders }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', localAddress, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, remaining: res.headers['ratelimit-remaining'], body: JSON.parse(body), headers: res.headers }))
    })
    req.on('error', reject).end()
  })
  const served = (remaining: string) => ({ status: 200, remaining, body: { name: SERVICE_NAME, version: VERSION, docs: '/docs', health: '/health', dashboard: '/dashboard' } })
  const answer = async (localAddress: string) => {
    const { headers: _headers, ...rest } = await from(localAddress)
    return rest
  }
  const since = Date.now()

  t.same(await answer('127.0.0.2'), served('1'))
  t.same(await answer('127.0.0.2'), served('0'))
  const refused = await from('127.0.0.2')
  t.equal(refused.status, 429, 'first client refused')
  t.same(refused.body, refusal(Number(refused.headers['retry-after'])))
  checkLimit(t, refused.headers, { limit: 2, remaining: 0, seconds: 900, since }, true, 'refused')
  t.same(await answer('127.0.0.3'), served('1'), 'second client has its own budget')
})

t.test('OPTIONS requests count against the general limit; approved CORS preflights do not', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_MAX: 3, ...NO_DELAY })
  const options = (url: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'OPTIONS', url, remoteAddress: '203.0.113.9', headers })
  const scan = await options('/wp-admin/scan')
  t.equal(scan.statusCode, 404, 'an OPTIONS to an unknown URL without a preflight is not found')
  t.equal(scan.headers['ratelimit-remaining'], '2', 'and counted')
  t.equal((await options('/.env')).statusCode, 404)
  const preflight = await options('/api/ai-companion/chat', { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], 'http://localhost:5173')
  t.equal(preflight.headers['ratelimit-remaining'], undefined, 'an approved preflight is answered before the limit')
  t.equal((await options('/cgi-bin/scan')).headers['ratelimit-remaining'], '0')
  const refused = await options('/cgi-bin/other')
  t.equal(refused.statusCode, 429, 'the fourth counted is refused')
  t.equal(refused.json().code, 'RATE_LIMITED')
  t.equal((await app.inject({ method: 'OPTIONS', url: '/x', remoteAddress: '203.0.113.10' })).statusCode, 404, 'another client is not')
})
