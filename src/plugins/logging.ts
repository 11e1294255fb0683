import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createLogFiles, type LogFiles } from '../services/logs/log-files.js'
import type { RequestLineFields } from '../services/logs/request-log.js'

declare module 'fastify' {
  interface FastifyInstance {
    logFiles: LogFiles
    /** Writes a request's requests.log line; for answers no hook sees (server-options.ts). */
    logRequest: (request: FastifyRequest, status: number, responseTimeMs: number | null) => void
  }
}

const DAY_MS = 24 * 60 * 60 * 1000
const CLIENT_CLOSED_REQUEST = 499

/**
 * Opens the rotated log files, writes one requests.log line per completed
 * request (a warning when slower than SLOW_RESPONSE_MS), prunes old files at
 * startup and daily, and flushes everything on close.
 */
export default fp(async (app) => {
  const { LOG_DIR, LOG_MAX_SIZE, LOG_RETENTION_DAYS, SLOW_RESPONSE_MS } = app.config
  const logFiles = await createLogFiles({ dir: LOG_DIR, maxSize: LOG_MAX_SIZE, retentionDays: LOG_RETENTION_DAYS })
  app.decorate('logFiles', logFiles)

  const prune = () => {
    logFiles.prune().catch((error: unknown) => app.log.warn({ err: error }, 'could not prune old log files'))
  }
  prune()
  const pruneTimer = setInterval(prune, DAY_MS).unref()

  // The id in every log line about the request, given to the client for support.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })

  const { requestLog } = logFiles

  function requestLine (request: FastifyRequest, status: number, responseTimeMs: number | null): RequestLineFields {
    const queryStart = request.url.indexOf('?')
    return {
      reqId: request.id,
      method: request.method,
      route: request.routeOptions.url ?? null,
      path: queryStart === -1 ? request.url : request.url.slice(0, queryStart),
      status,
      responseTimeMs,
      ip: request.ip,
      userAgent: request.headers['user-agent'] ?? null
    }
  }

  function logRequest (request: FastifyRequest, status: number, responseTimeMs: number | null): void {
    const line = requestLine(request, status, responseTimeMs)
    if (responseTimeMs !== null && responseTimeMs > SLOW_RESPONSE_MS) {
      requestLog.write('warn', line, 'slow response')
      app.log.warn({ reqId: request.id, route: line.route, responseTimeMs }, 'slow response')
    } else {
      requestLog.write('info', line, 'request completed')
    }
  }
  app.decorate('logRequest', logRequest)

  app.addHook('onResponse', (request, reply, done) => {
    logRequest(request, reply.statusCode, Math.round(reply.elapsedTime * 100) / 100)
    done()
  })

  // A client that hangs up before its answer gets no onResponse; it still
  // gets its line, with nginx's "client closed request" status.
  app.addHook('onRequestAbort', (request, done) => {
    requestLog.write('info', requestLine(request, CLIENT_CLOSED_REQUEST, null), 'request aborted by the client')
    done()
  })

  app.addHook('onClose', async () => {
    clearInterval(pruneTimer)
    await logFiles.close()
  })
}, { name: 'logging', dependencies: ['config'] })
