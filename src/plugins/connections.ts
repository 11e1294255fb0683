import fp from 'fastify-plugin'
import { parseTrustProxy } from '../config.js'
import { normalizeIP } from '../services/limits/client-key.js'
import type { ConnectionRefusal } from '../services/limits/connection-counts.js'
import { defaultMaxConnections, limitConnections, openFileLimit, trustedProxies } from '../services/http/connection-limits.js'

/** Refusals come in floods: one stdout warning per reason per minute says enough. */
const REFUSAL_WARNING_INTERVAL_MS = 60_000

/**
 * TCP connection caps below the open-file limit (HTTP_MAX_CONNECTIONS, derived
 * from the limit when unset; HTTP_MAX_CONNECTIONS_PER_IP), and a listening
 * server whose accept() fails (EMFILE) logs instead of crashing. Silent
 * sockets are reaped by Node's headersTimeout (HEADERS_TIMEOUT_MS, server-options.ts).
 */
export default fp(async (app) => {
  const { HTTP_MAX_CONNECTIONS, HTTP_MAX_CONNECTIONS_PER_IP, TRUST_PROXY } = app.config
  const fdLimit = openFileLimit()
  const safe = defaultMaxConnections(fdLimit)
  const max = HTTP_MAX_CONNECTIONS ?? safe
  if (max > safe) {
    app.log.warn({ maxConnections: max, openFileLimit: fdLimit, safeMaximum: safe },
      'HTTP_MAX_CONNECTIONS is close to or above the open-file limit (ulimit -n): a connection flood can exhaust file descriptors')
  }

  const warnedAt: Record<ConnectionRefusal, number> = { server: Number.NEGATIVE_INFINITY, address: Number.NEGATIVE_INFINITY }
  limitConnections(app.server, {
    max,
    maxPerAddress: HTTP_MAX_CONNECTIONS_PER_IP,
    keyOf: normalizeIP,
    isExempt: trustedProxies(parseTrustProxy(TRUST_PROXY)),
    onRefused: (reason, ip) => {
      const at = Date.now()
      if (at - warnedAt[reason] < REFUSAL_WARNING_INTERVAL_MS) return
      warnedAt[reason] = at
      app.log.warn(reason === 'server'
        ? { maxConnections: max }
        : { ip, maxConnectionsPerIp: HTTP_MAX_CONNECTIONS_PER_IP },
      reason === 'server'
        ? 'connection cap (HTTP_MAX_CONNECTIONS) reached: new connections are refused'
        : 'per-address connection cap (HTTP_MAX_CONNECTIONS_PER_IP) reached: new connections from it are refused')
    }
  })

  // Once listening, an 'error' on the server is a failed accept() (EMFILE when
  // descriptors ran out elsewhere): without a listener it would be an uncaught
  // exception. libuv keeps accepting once descriptors free up.
  app.addHook('onListen', (done) => {
    app.server.on('error', (error) => app.log.error({ err: error }, 'accepting a connection failed'))
    done()
  })
}, { name: 'connections', dependencies: ['config'] })
