import t from 'tap'
import { buildTestApp } from './helper.js'

const ALLOWED = 'http://localhost:5173'

t.test('helmet headers on every response, CSP default-src self, no HSTS in development', async (t) => {
  const app = await buildTestApp(t)
  for (const url of ['/', '/health', '/no-such-route']) {
    const response = await app.inject({ url })
    t.match(response.headers['content-security-policy'], /(^|;)default-src 'self'(;|$)/, `${url} CSP`)
    t.equal(response.headers['x-content-type-options'], 'nosniff', `${url} nosniff`)
    t.equal(response.headers['x-frame-options'], 'SAMEORIGIN')
    t.equal(response.headers['referrer-policy'], 'no-referrer')
    t.equal(response.headers['cross-origin-opener-policy'], 'same-origin')
    t.equal(response.headers['cross-origin-resource-policy'], 'same-origin')
    t.equal(response.headers['x-dns-prefetch-control'], 'off')
    t.equal(response.headers['strict-transport-security'], undefined, `${url} has no HSTS in development`)
    t.equal(response.headers['x-powered-by'], undefined)
  }
})

t.test('HSTS in production', async (t) => {
  const app = await buildTestApp(t, { NODE_ENV: 'production' })
  const response = await app.inject({ url: '/health/live' })
  t.equal(response.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains')
})

t.test('CORS matrix', async (t) => {
  const dev = await buildTestApp(t)
  const prod = await buildTestApp(t, { NODE_ENV: 'production', CORS_ORIGIN: 'https://app.example.com,https://www.example.com' })

  t.test('an allowed origin gets its origin back, with credentials', async (t) => {
    const response = await dev.inject({ url: '/', headers: { origin: ALLOWED } })
    t.equal(response.statusCode, 200)
    t.equal(response.headers['access-control-allow-origin'], ALLOWED)
    t.equal(response.headers['access-control-allow-credentials'], 'true')
    t.match(response.headers.vary, /Origin/)
    const listed = await prod.inject({ url: '/', headers: { origin: 'https://www.example.com' } })
    t.equal(listed.headers['access-control-allow-origin'], 'https://www.example.com')
  })

  t.test('localhost dev origins only in development', async (t) => {
    const inDev = await dev.inject({ url: '/', headers: { origin: 'http://127.0.0.1:3000' } })
    t.equal(inDev.headers['access-control-allow-origin'], 'http://127.0.0.1:3000')
    const inProd = await prod.inject({ url: '/', headers: { origin: 'http://localhost:5173' } })
    t.equal(inProd.statusCode, 200, 'still served')
    t.equal(inProd.headers['access-control-allow-origin'], undefined)
  })

  t.test('a disallowed origin gets no CORS headers', async (t) => {
    for (const origin of ['https://evil.example', 'http://localhost.evil.example', 'null']) {
      const response = await dev.inject({ url: '/', headers: { origin } })
      t.equal(response.statusCode, 200, `${origin} served`)
      t.equal(response.headers['access-control-allow-origin'], undefined, `${origin} not approved`)
      t.equal(response.headers['access-control-allow-credentials'], undefined)
    }
  })

  t.test('no Origin: served, no CORS headers, still varies by Origin', async (t) => {
    const response = await dev.inject({ url: '/' })
    t.equal(response.statusCode, 200)
    t.equal(response.headers['access-control-allow-origin'], undefined)
    t.equal(response.headers['access-control-allow-credentials'], undefined)
    t.equal(response.headers.vary, 'Origin', 'a shared cache must not hand this answer to a browser')
  })

  t.test('preflight from an allowed origin is approved with the listed methods and headers', async (t) => {
    const response = await dev.inject({
      method: 'OPTIONS',
      url: '/api/ai-companion/chat',
      headers: { origin: ALLOWED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
    })
    t.equal(response.statusCode, 204)
    t.equal(response.headers['access-control-allow-origin'], ALLOWED)
    t.equal(response.headers['access-control-allow-methods'], 'GET, POST, DELETE, OPTIONS')
    t.equal(response.headers['access-control-allow-headers'], 'Content-Type, Authorization, X-Requested-With')
    t.equal(response.headers['access-control-allow-credentials'], 'true')
    t.equal(response.headers['access-control-max-age'], '600')
    t.equal(response.headers.vary, 'Origin')
    t.equal(response.headers['content-length'], '0', 'Safari waits for a body on a 204 without it')
    t.equal(response.body, '')
    t.equal(response.headers['x-content-type-options'], 'nosniff', 'with the security headers')
    t.equal(response.headers['access-control-expose-headers'], undefined)
  })

  t.test('an OPTIONS from an allowed origin without a requested method is no preflight', async (t) => {
    const response = await dev.inject({ method: 'OPTIONS', url: '/api/ai-companion/chat', headers: { origin: ALLOWED } })
    t.equal(response.statusCode, 400)
    t.same(response.json(), {
      error: 'An OPTIONS request from a browser origin is a CORS preflight: it needs Access-Control-Request-Method',
      code: 'BAD_REQUEST',
      statusCode: 400
    })
    t.equal(response.headers['access-control-allow-origin'], ALLOWED)
    t.equal(response.headers['access-control-allow-methods'], undefined)
  })

  t.test('preflight from a disallowed origin gets no approval', async (t) => {
    const response = await dev.inject({
      method: 'OPTIONS',
      url: '/api/ai-companion/chat',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' }
    })
    // No route answers OPTIONS: a preflight not approved is an unknown route.
    t.equal(response.statusCode, 404)
    t.same(response.json(), { error: 'Route OPTIONS /api/ai-companion/chat not found', code: 'NOT_FOUND', statusCode: 404 })
    t.equal(response.headers['access-control-allow-origin'], undefined)
    t.equal(response.headers['access-control-allow-methods'], undefined)
    t.equal(response.headers['access-control-allow-credentials'], undefined)
    t.equal(response.headers.vary, 'Origin')
  })

  t.test('a preflight without Origin gets no approval either', async (t) => {
    const response = await dev.inject({ method: 'OPTIONS', url: '/api/ai-companion/chat', headers: { 'access-control-request-method': 'POST' } })
    t.equal(response.statusCode, 404)
    t.equal(response.headers['access-control-allow-origin'], undefined)
    t.equal(response.headers['access-control-allow-methods'], undefined)
  })
})

t.test('docs: OpenAPI 3 from the route schemas, UI working under its CSP', async (t) => {
  const app = await buildTestApp(t)
  const json = await app.inject({ url: '/docs/json' })
  t.equal(json.statusCode, 200)
  const document = json.json()
  t.match(document.openapi, /^3\./)
  t.ok(document.paths['/health'], '/health is documented')
  t.ok(document.paths['/'], '/ is documented')
  t.same(Object.keys(document.paths['/health'].get.responses).sort(), ['200', '503'])

  const ui = await app.inject({ url: '/docs/' })
  t.equal(ui.statusCode, 200)
  t.match(ui.headers['content-type'], /text\/html/)
  const csp = String(ui.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.match(csp, /script-src 'self'/)
  t.notMatch(csp, /script-src[^;]*'unsafe-inline'/, 'no inline scripts allowed')
  t.notMatch(ui.body, /<script(?![^>]*\bsrc=)[^>]*>/, 'the page has no inline script the CSP would block')
  const initializer = await app.inject({ url: '/docs/static/swagger-initializer.js' })
  t.equal(initializer.statusCode, 200)
})

t.test('GET / lists no sessions and no config', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/' })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { name: 'lovers-code-backend', version: '1.0.0', docs: '/docs', health: '/health', dashboard: '/dashboard' })
})
