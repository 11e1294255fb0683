import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { readLog, spawnServer, until } from './helper.js'

/*
 * The real process (src/server.ts in a child): what a fresh clone does with
 * no configuration, and what a load balancer's kept-alive probe connection
 * sees at SIGTERM. (Signals and draining: test/lifecycle.test.ts.)
 */

t.test('SIGTERM: a load balancer\'s kept-alive probe connection is closed at once, never answered 200 again', async (t) => {
  const server = await spawnServer(t)
  const url = new URL(await server.url)
  // One raw kept-alive connection, as a load balancer holds one for its probes.
  const socket = connect(Number(url.port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { received += chunk })
  socket.on('error', () => undefined) // a probe written as the server closes may meet a reset
  const closed = new Promise((resolve) => socket.once('close', resolve)) // not once(): it rejects on the reset
  socket.write('GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n')
  await until(() => received.includes('{"status":"ready"}'), 10_000, 'the first probe\'s answer')
  t.match(received, /connection: keep-alive/i, 'the connection is kept alive')

  server.child.kill('SIGTERM')
  await until(() => server.stdout().includes('shutting down'), 10_000, 'the shutdown to begin')
  // The probe either meets a closed connection or is told 503: never "ready".
  if (!socket.destroyed) socket.write('GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n')
  await closed
  const answers = received.split(/(?=^HTTP\/1\.1 )/m)
  t.equal(answers[0].slice(0, 12), 'HTTP/1.1 200')
  t.ok(answers.length === 1 || /^HTTP\/1\.1 503[\s\S]*\{"status":"shutting-down"\}$/.test(answers[1]), `after the signal: ${answers.slice(1).join('') || 'closed'}`)
  t.ok(answers.length <= 2)
  t.equal(await server.exited, 0)
  t.notMatch(server.stdout(), /drain timed out/, 'the kept-alive connection did not hold the drain')
})

t.test('no configuration at all: starts on port 4000 with offline AI and logs in ./logs', async (t) => {
  // Port 4000 is fixed here, so it may be taken on a shared machine: then the
  // server must say so and exit 1 rather than pick another port.
  const busy = await new Promise<boolean>((resolve) => {
    const probe = createServer().once('error', () => resolve(true)).listen(4000, () => probe.close(() => resolve(false)))
  })
  const server = await spawnServer(t, { PORT: undefined, HOST: undefined })
  if (busy) {
    t.equal(await server.exited, 1, 'port 4000 was busy: exit 1')
    t.match(server.stdout() + server.stderr(), /4000/)
    return
  }
  const url = await server.url
  t.equal(url, 'http://127.0.0.1:4000')
  // Healthy once an event-loop sample goes without the startup's own stall (a loaded machine).
  let health: Record<string, any> = {}
  await until(async () => {
    const response = await fetch(`${url}/health`)
    health = await response.json() as Record<string, any>
    return response.status === 200
  }, 15_000, 'a healthy answer')
  t.match(health, { status: 'healthy', ai: { provider: 'offline' }, checks: { redis: 'unused' } })
  t.match(server.stdout(), /OFFLINE MODE/, 'the loud warning')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
  t.ok((await readLog(join(server.cwd, 'logs'), 'requests')).some((line) => line.route === '/health'), 'logs in ./logs of the working folder')
})
