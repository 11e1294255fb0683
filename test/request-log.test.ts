import t from 'tap'
import { requestLogLine, type RequestLineFields } from '../src/services/logs/request-log.js'

/*
 * The requests.log line is serialised by hand for speed. Whatever the values,
 * it must be exactly the line JSON.stringify writes for the same fields (and
 * so one line that parses back to them).
 */

const TIME = Date.UTC(2026, 11, 7, 6, 30, 15, 123)

const fields = (overrides: Partial<RequestLineFields> = {}): RequestLineFields => ({
  reqId: 'f85ac8b8-4f4a-4ccd-a48e-9e674cd0330c',
  method: 'GET',
  route: '/api/sessions/:id',
  path: '/api/sessions/abc',
  status: 200,
  responseTimeMs: 0.42,
  ip: '127.0.0.1',
  userAgent: 'wrk/4.2',
  ...overrides
})

const reference = (level: string, f: RequestLineFields, msg: string) => JSON.stringify({
  level,
  time: new Date(TIME).toISOString(),
  log: 'requests',
  reqId: f.reqId,
  method: f.method,
  route: f.route,
  path: f.path,
  status: f.status,
  responseTimeMs: f.responseTimeMs !== null && Number.isFinite(f.responseTimeMs) ? Math.round(f.responseTimeMs * 100) / 100 : null,
  ip: f.ip,
  userAgent: f.userAgent,
  msg
}) + '\n'

t.test('strings that need escaping are escaped as JSON.stringify does; plain ones are quoted as they are', async (t) => {
  const values = [
    'plain', '', 'a "quoted" word', 'back\\slash', 'two\nlines', 'carriage\rreturn', 'tab\there',
    '\u001b[31mred terminal\u001b[0m', 'delete\u007f', 'café 💜', 'lone \ud800 surrogate', '{"level":"error"}'
  ]
  for (const value of values) {
    for (const f of [fields({ path: value }), fields({ userAgent: value }), fields({ ip: value }), fields({ route: value })]) {
      const line = requestLogLine('info', f, 'request completed', TIME)
      t.equal(line, reference('info', f, 'request completed'), JSON.stringify(value))
      t.equal(line.indexOf('\n'), line.length - 1, 'one line')
    }
  }
  const nulls = fields({ route: null, userAgent: null })
  t.equal(requestLogLine('warn', nulls, 'slow response', TIME), reference('warn', nulls, 'slow response'))
  t.same(JSON.parse(requestLogLine('warn', nulls, 'slow response', TIME)), {
    ...nulls, level: 'warn', time: '2026-12-07T06:30:15.123Z', log: 'requests', msg: 'slow response'
  })
})

t.test('response times are written to two decimals, as String(Math.round(ms * 100) / 100) writes them', async (t) => {
  let differing = 0
  for (let hundredths = 0; hundredths <= 200_000; hundredths++) {
    const f = fields({ responseTimeMs: hundredths / 100 })
    if (requestLogLine('info', f, 'request completed', TIME) !== reference('info', f, 'request completed')) differing++
  }
  t.equal(differing, 0, '0 to 2000 ms in hundredths')
  for (const ms of [12.345, 0.004, 0.005, 1e-7, 99999999.999, 2 ** 53, -1.5]) {
    const f = fields({ responseTimeMs: ms })
    t.equal(requestLogLine('info', f, 'request completed', TIME), reference('info', f, 'request completed'), String(ms))
  }
  for (const ms of [null, NaN, Infinity]) {
    const line = JSON.parse(requestLogLine('info', fields({ responseTimeMs: ms }), 'request aborted by the client', TIME))
    t.equal(line.responseTimeMs, null, `${ms} is written as null`)
  }
})
