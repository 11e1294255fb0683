import { once } from 'node:events'
import t from 'tap'
import { readLog, startServer, until, waitForLogLine } from './helper.js'
import { TestClient, clientFrame, rawExchange, refusedUpgrade, serverFrames, upgradeRequestLines } from './ws-client.js'

/*
 * errors.log as a disk filler (issue 15, item 6): client protocol errors are
 * short lines, at most PROTOCOL_ERROR_LOG_MAX per address per window, and
 * upgrades count against WS_UPGRADE_RATE.
 */

const upgrade = (port: number) => upgradeRequestLines(port).join('\r\n') + '\r\n\r\n'
const INVALID_UTF8 = clientFrame(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))

t.test('bad-frame reconnects for 2 s write a bounded number of short lines, with the count of those left out', async (t) => {
  const { app, port } = await startServer(t, { PROTOCOL_ERROR_LOG_MAX: 3, PROTOCOL_ERROR_LOG_WINDOW_MS: 1000, WS_UPGRADE_RATE: 100000 })
  const started = Date.now()
  let attempts = 0
  while (Date.now() - started < 2000) {
    const attack = await rawExchange(t, port, Buffer.concat([Buffer.from(upgrade(port)), INVALID_UTF8]))
    await attack.ended
    t.equal(serverFrames(attack.received()).closeCode, 1007)
    attempts++
  }
  // One more after the windows above ended: it reports what was left out.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const last = await rawExchange(t, port, Buffer.concat([Buffer.from(upgrade(port)), INVALID_UTF8]))
  await last.ended
  await waitForLogLine(app.config.LOG_DIR, 'errors', (line) => line.suppressed !== undefined)

  const lines = (await readLog(app.config.LOG_DIR, 'errors')).filter((line) => line.msg === 'websocket protocol error')
  t.ok(attempts > 20, `${attempts} bad frames sent`)
  t.ok(lines.length <= 3 * 4, `${lines.length} lines written (at most 3 per 1 s window)`)
  const suppressed = lines.reduce((sum, line) => sum + (line.suppressed ?? 0), 0)
  t.ok(suppressed >= attempts - lines.length - 3, `${suppressed} lines counted as left out`)
  for (const line of lines) {
    t.match(line, { level: 'warn', ip: '127.0.0.1', code: 'WS_ERR_INVALID_UTF8', errMessage: 'Invalid WebSocket frame: invalid UTF-8 sequence' })
    t.equal(line.err, undefined, 'no error object, no stack')
  }
  t.notMatch(JSON.stringify(lines), /stack|at Receiver/)
})

t.test('WS_UPGRADE_RATE: past it an upgrade is refused with 429 before upgrading; other addresses connect', async (t) => {
  const { url } = await startServer(t, { WS_UPGRADE_RATE: 3 })
  for (let i = 0; i < 3; i++) {
    const client = await TestClient.connect(t, url)
    client.ws.close()
    await once(client.ws, 'close')
  }
  const refused = await refusedUpgrade(t, url)
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['retry-after'], '60')
  t.same(refused.body, { error: 'Too many requests, retry after 60 s', code: 'RATE_LIMITED', statusCode: 429, retryAfter: 60 })
  const other = await TestClient.connect(t, url, { localAddress: '127.0.0.2' })
  await until(() => other.userId !== '')
})
