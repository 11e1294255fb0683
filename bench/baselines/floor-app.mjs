// What the same-work floor and the floor with the required work share: a
// bare Fastify app that writes our requests.log line with pino for every
// request, and nothing else until the baseline adds it.
import Fastify from 'fastify'
import { pino } from 'pino'
import { LOG_FILE, onSignal, ready, requestLine } from './common.mjs'

export function floorApp (fastifyOptions = {}) {
  const destination = pino.destination({ dest: LOG_FILE, sync: false })
  const log = pino({
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    base: { log: 'requests' }
  }, destination)

  const app = Fastify({ logger: false, ...fastifyOptions })
  app.addHook('onResponse', (request, reply, done) => {
    const queryStart = request.url.indexOf('?')
    log.info(requestLine(request.id, request.method, request.routeOptions.url ?? null,
      queryStart === -1 ? request.url : request.url.slice(0, queryStart),
      reply.statusCode, Math.round(reply.elapsedTime * 100) / 100, request.ip, request.headers['user-agent']), 'request completed')
    done()
  })

  /** Listens, says so, and flushes the log when stopped. */
  async function start () {
    await app.listen({ port: 0, host: '127.0.0.1' })
    ready(app.server.address().port)
    onSignal(async () => {
      await app.close()
      destination.flushSync()
    })
  }
  return { app, start }
}
