// SPEC §11 "same-work floor": bare Fastify that sets the same response
// headers as our server from a precomputed object and writes the same
// requests.log line with pino, and nothing else. What our full stack may add
// on top of this is the rate limit, validation, CORS and the not-found path.
import Fastify from 'fastify'
import { pino } from 'pino'
import { HEADERS, healthBody, LOG_FILE, onSignal, ready, requestLine, sessionHandler } from './common.mjs'

const destination = pino.destination({ dest: LOG_FILE, sync: false })
const log = pino({
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
  base: { log: 'requests' }
}, destination)

const app = Fastify({ logger: false })
app.addHook('onRequest', (_request, reply, done) => {
  reply.headers(HEADERS)
  done()
})
app.addHook('onResponse', (request, reply, done) => {
  const queryStart = request.url.indexOf('?')
  log.info(requestLine(request.id, request.method, request.routeOptions.url ?? null,
    queryStart === -1 ? request.url : request.url.slice(0, queryStart),
    reply.statusCode, Math.round(reply.elapsedTime * 100) / 100, request.ip, request.headers['user-agent']), 'request completed')
  done()
})

app.get('/health', async () => healthBody())
app.get('/api/sessions/:id', sessionHandler)

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
onSignal(async () => {
  await app.close()
  destination.flushSync()
})
