import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { aiEnv, startFakeGemini } from './fake-gemini.js'
import { persona as companionConfig, rawPost, readLog, startServer } from './helper.js'

/*
 * SPEC §7 "no log line is lost on graceful shutdown": AI calls still running
 * when the drain is cut (server.ts closes the remaining connections after
 * SHUTDOWN_TIMEOUT_MS) are aborted, and their ai-requests.log lines are
 * written before the log files close. A listening app and a raw client.
 */

t.test('a drain cut short: the aborted AI calls still get their ai-requests.log lines', async (t) => {
  const fake = await startFakeGemini(t)
  const { app, url } = await startServer(t, aiEnv(fake))
  fake.script(
    { hang: true },
    { chunks: ['one', ' two'], chunkDelayMs: 1500 }
  )
  rawPost(`${url}/api/ai-companion/chat`, { message: 'hi', companionConfig })
  rawPost(`${url}/api/ai-companion/chat`, { message: 'hi', companionConfig }, { accept: 'text/event-stream' })
  await fake.waitForRequests(2)

  let closed = false
  const closing = app.close().then(() => { closed = true })
  await sleep(100)
  t.equal(closed, false, 'the drain waits for the requests in flight')
  app.server.closeAllConnections()
  await closing

  t.same(fake.requests.map((entry) => entry.abandoned), [true, true], 'both upstream calls were aborted')
  const lines = await readLog(app.config.LOG_DIR, 'ai-requests')
  t.same(lines.map(({ operation, streamed, result, errorCode, attempts }) => ({ operation, streamed, result, errorCode, attempts }))
    .sort((a, b) => Number(a.streamed) - Number(b.streamed)), [
    { operation: 'chat', streamed: false, result: 'aborted', errorCode: 'CLIENT_GONE', attempts: 1 },
    { operation: 'chat', streamed: true, result: 'aborted', errorCode: 'CLIENT_GONE', attempts: 1 }
  ], 'one line per call, written before the files closed')
})
