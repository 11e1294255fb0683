import { mkdir, readdir, readFile, readlink, realpath, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createLogFiles } from '../src/services/logs/log-files.js'
import { buildTestApp, readLog, startServer, tempDir, waitForLogLine } from './helper.js'

const DAY_MS = 24 * 60 * 60 * 1000

t.test('one requests.log line per request with the SPEC §7 fields, no query string, no secrets', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    url: '/health/live?email=someone@example.com',
    headers: { 'user-agent': 'probe/1.0', authorization: 'Bearer top-secret', cookie: 'sid=cookie-secret' }
  })
  const line = await waitForLogLine(app.config.LOG_DIR, 'requests', (l) => l.reqId === response.headers['x-request-id'])
  t.match(line, {
    level: 'info',
    msg: 'request completed',
    method: 'GET',
    route: '/health/live',
    path: '/health/live',
    status: 200,
    ip: '127.0.0.1',
    userAgent: 'probe/1.0'
  })
  t.type(line.responseTimeMs, 'number')
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/)

  const unknown = await app.inject({ url: '/missing/page' })
  const missing = await waitForLogLine(app.config.LOG_DIR, 'requests', (l) => l.reqId === unknown.headers['x-request-id'])
  t.match(missing, { status: 404, route: null, path: '/missing/page' })

  await app.close() // flushes every log: nothing more can arrive
  const requestLines = await readLog(app.config.LOG_DIR, 'requests')
  t.same([response, unknown].map((r) => requestLines.filter((l) => l.reqId === r.headers['x-request-id']).length), [1, 1],
    'exactly one line for each request')
  for (const name of ['requests', 'errors', 'ai-requests', 'server-stats']) {
    const text = await readFile(join(app.config.LOG_DIR, `${name}.log`), 'utf8')
    t.notMatch(text, /top-secret|cookie-secret|someone@example/, `${name}.log has no secret or query string`)
  }
})

t.test('a response slower than SLOW_RESPONSE_MS is logged as a warning', async (t) => {
  const app = await buildTestApp(t, { SLOW_RESPONSE_MS: 20 }, (app) => {
    app.get('/test/slow', async () => { await sleep(40); return { ok: true } })
  })
  const response = await app.inject({ url: '/test/slow' })
  const line = await waitForLogLine(app.config.LOG_DIR, 'requests', (l) => l.reqId === response.headers['x-request-id'])
  t.match(line, { level: 'warn', msg: 'slow response', route: '/test/slow', status: 200 })
  // Over the threshold is what makes it a warning (the 40 ms sleep leaves room for a timer that fires early).
  t.ok(line.responseTimeMs > 20, `${line.responseTimeMs} ms`)
})

t.test('each log is reachable as LOG_DIR/<name>.log and rotates at LOG_MAX_SIZE', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const app = await buildTestApp(t, { LOG_MAX_SIZE: '1k' })
  const dir = app.config.LOG_DIR
  for (const name of ['requests', 'ai-requests', 'errors', 'server-stats']) {
    t.equal(await readlink(join(dir, `${name}.log`)), join(name, 'current.log'), `${name}.log is a stable link`)
  }
  const agents = Array.from({ length: 40 }, (_, i) => `rotation-test-${i}`)
  for (const agent of agents) await app.inject({ url: '/health/live', headers: { 'user-agent': agent } })
  await app.close() // flushes: every line is in its file
  const rotated = async () => (await readdir(join(dir, 'requests'))).filter((f) => f !== 'current.log')

  const files = await rotated()
  t.ok(files.length >= 2, `rotated into ${files.length} files`)
  for (const file of files) t.match(file, /^requests\.\d{4}-\d\d-\d\d\.\d+\.log$/)
  const byNumber = files.sort((a, b) => Number(a.split('.').at(-2)) - Number(b.split('.').at(-2)))
  t.equal(await realpath(join(dir, 'requests.log')), await realpath(join(dir, 'requests', byNumber.at(-1)!)), 'requests.log follows the newest file')
  const perFile = await Promise.all(byNumber.map(async (file) =>
    (await readFile(join(dir, 'requests', file), 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line).userAgent as string)))
  t.same(perFile.flat(), agents, 'every request once, in order, across the files')
  const current = (await readLog(dir, 'requests')).map((line) => line.userAgent)
  t.ok(current.length >= 1 && current.length < agents.length, `the current file holds ${current.length} lines`)
  t.same(current, agents.slice(-current.length), 'only the latest ones')
  // One batch spanning many files queues one listener per reopen: no leak warning for that.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(warnings, [], 'no process warning')
})

/** The requests/ files in rotation order, each with the user agents of its lines. */
async function requestFiles (dir: string) {
  const names = (await readdir(join(dir, 'requests'))).filter((f) => f !== 'current.log')
    .sort((a, b) => Number(a.split('.').at(-2)) - Number(b.split('.').at(-2)))
  return Promise.all(names.map(async (name) => {
    const text = await readFile(join(dir, 'requests', name), 'utf8')
    return { name, bytes: Buffer.byteLength(text), agents: text.split('\n').filter(Boolean).map((line) => JSON.parse(line).userAgent as string) }
  }))
}

// The defect this guards against: pino-roll rolled by size only once its
// stream went idle, so under load the link could name a fresh, empty file
// while the newest lines were still in the old one.
for (const round of [1, 2, 3]) {
  t.test(`size rotation under concurrent load, round ${round}: the link shows the newest line at once, nothing lost, no file over the size`, async (t) => {
    // 300 connections at once from one address: over the default per-address cap (256).
    const { app, url } = await startServer(t, { LOG_MAX_SIZE: '20k', HTTP_MAX_CONNECTIONS_PER_IP: 400 })
    const dir = app.config.LOG_DIR
    const agents = Array.from({ length: 300 }, (_, i) => `load-${round}-${i}`)
    const responses = await Promise.all(agents.map((agent) => fetch(`${url}/health/live`, { headers: { 'user-agent': agent } })))
    t.same(responses.map((r) => r.status), agents.map(() => 200))
    await fetch(`${url}/health/live`, { headers: { 'user-agent': 'newest' } })
    // While the server runs: the newest line arrives in the file the link names (no waiting for an idle stream).
    await waitForLogLine(dir, 'requests', (line) => line.userAgent === 'newest', 5000)
    const lines = await readLog(dir, 'requests')
    t.equal(lines.at(-1)?.userAgent, 'newest', 'the last line of requests.log is the newest request')

    await app.close()
    const files = await requestFiles(dir)
    t.ok(files.length >= 4, `rotated into ${files.length} files`)
    for (const file of files) t.ok(file.bytes <= 20 * 1024, `${file.name} holds ${file.bytes} bytes, at most LOG_MAX_SIZE`)
    t.equal(await realpath(join(dir, 'requests.log')), await realpath(join(dir, 'requests', files.at(-1)!.name)), 'the link names the last file')
    const written = files.flatMap((file) => file.agents)
    t.same([...written].sort(), [...agents, 'newest'].sort(), 'every request exactly once across the files')
    t.equal(written.at(-1), 'newest')
  })
}

t.test('files older than LOG_RETENTION_DAYS are deleted at startup, including older processes\' files', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'errors'), { recursive: true })
  const old = join(dir, 'errors', 'errors.2020-01-01.1.log')
  const recent = join(dir, 'errors', 'errors.2026-01-01.1.log')
  await writeFile(old, '{"old":true}\n')
  await writeFile(recent, '{"recent":true}\n')
  const now = Date.now()
  await utimes(old, new Date(now - 10 * DAY_MS), new Date(now - 10 * DAY_MS))
  await utimes(recent, new Date(now - 2 * DAY_MS), new Date(now - 2 * DAY_MS))

  await buildTestApp(t, { LOG_DIR: dir, LOG_RETENTION_DAYS: 7 })
  const deadline = Date.now() + 5000
  while ((await readdir(join(dir, 'errors'))).includes('errors.2020-01-01.1.log') && Date.now() < deadline) await sleep(20)
  const files = await readdir(join(dir, 'errors'))
  t.notOk(files.includes('errors.2020-01-01.1.log'), 'the 10-day-old file is gone')
  t.ok(files.includes('errors.2026-01-01.1.log'), 'the 2-day-old file is kept')
})

t.test('prune() never deletes the active file, and counts what it removed', async (t) => {
  const dir = await tempDir(t)
  let now = Date.now()
  const files = await createLogFiles({ dir, maxSize: '10m', retentionDays: 1, now: () => now })
  t.teardown(() => files.close())
  files.errors.info('hello')
  await sleep(50)
  now += 30 * DAY_MS
  t.equal(await files.prune(), 0, 'the active files are never pruned')
  await writeFile(join(dir, 'errors', 'errors.2000-01-01.1.log'), 'x\n')
  await utimes(join(dir, 'errors', 'errors.2000-01-01.1.log'), new Date(0), new Date(0))
  t.equal(await files.prune(), 1)
})

t.test('secrets are redacted wherever they appear in a logged object', async (t) => {
  const dir = await tempDir(t)
  const files = await createLogFiles({ dir, maxSize: '10m', retentionDays: 7 })
  files.errors.error({ req: { headers: { authorization: 'Bearer a', cookie: 'b' } }, headers: { authorization: 'Bearer c' }, config: { GEMINI_API_KEY: 'd' } }, 'x')
  await files.close()
  const [line] = await readLog(dir, 'errors')
  t.same(line.req.headers, { authorization: '[redacted]', cookie: '[redacted]' })
  t.same(line.headers, { authorization: '[redacted]' })
  t.same(line.config, { GEMINI_API_KEY: '[redacted]' })
})

t.test('retention deletes rotated files of the four logs wherever they are in LOG_DIR, and nothing else', async (t) => {
  const dir = await tempDir(t)
  const rotated = ['requests.3.log', 'requests.2026-01-01.1.log', 'ai-requests/ai-requests.2026-01-01.2.log', 'errors/errors.7.log', 'old/server-stats.2025-12-31.4.log']
  const others = ['errors/notes.txt', 'notes.log', 'requests.log.bak', 'my-requests.1.log', 'errors/errors.final.log', 'requests.2026-01-01.log']
  const recent = 'requests.4.log'
  const monthAgo = new Date(Date.now() - 30 * DAY_MS)
  for (const file of [...rotated, ...others, recent]) {
    await mkdir(join(dir, file, '..'), { recursive: true })
    await writeFile(join(dir, file), '{}\n')
    if (file !== recent) await utimes(join(dir, file), monthAgo, monthAgo)
  }
  const files = await createLogFiles({ dir, maxSize: '10m', retentionDays: 7 })
  t.teardown(() => files.close())
  t.equal(await files.prune(), rotated.length)
  const left = await readdir(dir, { recursive: true })
  for (const file of rotated) t.notOk(left.includes(file), `${file} is deleted`)
  for (const file of [...others, recent]) t.ok(left.includes(file), `${file} is kept`)
})
