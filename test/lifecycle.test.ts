import { join } from 'node:path'
import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFakeGemini } from './fake-gemini.js'
import { buildTestApp, persona, rawRequest, readLog, ROOT, spawnServer } from './helper.js'

const crashFixture = join(ROOT, 'test/fixtures/crash-after-start.mjs')

for (const kind of ['exception', 'rejection']) {
  t.test(`an unhandled ${kind} is written to errors.log (flushed) and the process exits 1`, async (t) => {
    const server = await spawnServer(t, { CRASH_KIND: kind }, undefined, ['--import', crashFixture])
    await server.url
    server.child.kill('SIGUSR1')
    t.equal(await server.exited, 1)
    const lines = await readLog(join(server.cwd, 'logs'), 'errors')
    const fault = lines.find((line) => line.msg === 'process fault')
    t.match(fault, {
      level: 'fatal',
      err: { type: 'Error', message: kind === 'exception' ? 'simulated uncaught exception' : 'simulated unhandled rejection', stack: /crash-after-start\.mjs/ }
    })
  })
}

// SIGTERM and SIGINT are what supervisors and terminals send; close-with-grace
// drains on SIGHUP, SIGQUIT and SIGUSR2 too (README, Lifecycle).
for (const signal of ['SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const) {
  t.test(`${signal} with nothing in flight: exit 0 promptly, logs flushed`, async (t) => {
    const server = await spawnServer(t)
    const url = await server.url
    t.equal((await fetch(`${url}/health/live`, { headers: { 'user-agent': 'before-term' } })).status, 200)
    const started = Date.now()
    server.child.kill(signal)
    t.equal(await server.exited, 0)
    t.ok(Date.now() - started < 3000, 'no needless wait')
    const lines = await readLog(join(server.cwd, 'logs'), 'requests')
    t.ok(lines.some((line) => line.userAgent === 'before-term'), 'the request line is in requests.log')
    t.match(server.stdout(), new RegExp(`"signal":"${signal}".*shutting down`))
    t.match(server.stdout(), /shutdown complete/)
  })
}

async function slowChat (t: Test, env: Record<string, string> = {}) {
  const fake = await startFakeGemini(t)
  fake.setDefault({ text: 'Finished after a while.', delayMs: 1500 })
  const server = await spawnServer(t, { GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: fake.url, ...env })
  const url = await server.url
  const inFlight = fetch(`${url}/api/ai-companion/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'in-flight' },
    body: JSON.stringify({ message: 'hello', companionConfig: persona })
  })
  await fake.waitForRequests(1)
  return { fake, server, url, inFlight }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} drains a slow in-flight AI request: readiness 503 at once, 200 delivered, exit 0, log lines written`, async (t) => {
    const { server, url, inFlight } = await slowChat(t)
    t.equal((await rawRequest(`${url}/health/ready`)).status, 200)
    server.child.kill(signal)
    // Idle kept-alive connections are closed and the listener stops at once
    // (readiness 503 on a busy connection is tested in test/health.test.ts).
    const deadline = Date.now() + 3000
    let probe: unknown = await rawRequest(`${url}/health/ready`).catch((error: NodeJS.ErrnoException) => error.code)
    while (probe !== 'ECONNREFUSED' && Date.now() < deadline) {
      await sleep(20)
      probe = await rawRequest(`${url}/health/ready`).catch((error: NodeJS.ErrnoException) => error.code)
    }
    t.equal(probe, 'ECONNREFUSED', 'no new connections are accepted while draining')

    const response = await inFlight
    const answered = Date.now()
    t.equal(response.status, 200, 'the in-flight request completed')
    t.match(await response.json(), { message: 'Finished after a while.', fallback: false })
    t.equal(await server.exited, 0)
    t.ok(Date.now() - answered < 2000, 'the process exits promptly once the last request is answered')
    t.notMatch(server.stdout(), /drain timed out/, 'the kept-alive connection did not hold the drain')
    const lines = await readLog(join(server.cwd, 'logs'), 'requests')
    t.match(lines.find((line) => line.userAgent === 'in-flight'), { route: '/api/ai-companion/chat', status: 200 })
    const ai = await readLog(join(server.cwd, 'logs'), 'ai-requests')
    t.equal(ai.length, 1, 'the AI line is flushed too')
  })
}

t.test('a second signal exits at once', async (t) => {
  const { server, inFlight } = await slowChat(t, { SHUTDOWN_TIMEOUT_MS: '20000' })
  inFlight.catch(() => undefined)
  server.child.kill('SIGTERM')
  await sleep(100)
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 1)
  t.ok(Date.now() - started < 1000, 'no drain after the second signal')
})

t.test('a drain longer than SHUTDOWN_TIMEOUT_MS is cut and the process still exits', async (t) => {
  const { server, inFlight } = await slowChat(t, { SHUTDOWN_TIMEOUT_MS: '300' })
  const cut = inFlight.then(() => 'answered', () => 'cut')
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
  t.ok(Date.now() - started < 1400, 'did not wait for the 1.5 s upstream')
  t.equal(await cut, 'cut')
  t.match(server.stdout(), /drain timed out/)
})

t.test('a request refused while draining still has its request id and security headers', async (t) => {
  const app = await buildTestApp(t)
  app.lifecycle.beginShutdown()
  const refused = await app.inject({ url: '/' })
  t.equal(refused.statusCode, 503)
  t.same(refused.json(), { error: 'Server is shutting down, retry on another instance', code: 'SHUTTING_DOWN', statusCode: 503 })
  t.equal(refused.headers.connection, 'close')
  t.match(refused.headers['content-security-policy'], /default-src 'self'/)
  t.equal(refused.headers['x-content-type-options'], 'nosniff')
  t.match(refused.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const probe = await app.inject({ url: '/health/ready' })
  t.equal(probe.statusCode, 503)
  t.same(probe.json(), { status: 'shutting-down' })
})
