import { join } from 'node:path'
import t from 'tap'
import { ROOT, readLog, spawnServer } from './helper.js'

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

t.test('SIGTERM with nothing in flight: exit 0 promptly, logs flushed', async (t) => {
  const server = await spawnServer(t)
  const url = await server.url
  t.equal((await fetch(`${url}/health/live`, { headers: { 'user-agent': 'before-term' } })).status, 200)
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
  t.ok(Date.now() - started < 3000, 'no needless wait')
  const lines = await readLog(join(server.cwd, 'logs'), 'requests')
  t.ok(lines.some((line) => line.userAgent === 'before-term'), 'the request line is in requests.log')
  t.match(server.stdout(), /"signal":"SIGTERM".*shutting down/)
  t.match(server.stdout(), /shutdown complete/)
})
