import type { IncomingMessage, ServerResponse } from 'node:http'
import helmet from 'helmet'
import type { Config } from '../../config.js'

/**
 * helmet's headers for this configuration (CSP `default-src 'self'`, HSTS in
 * production only), computed once by running helmet against a recording
 * response. Our options hold no per-request parts (no CSP nonces), so every
 * response gets the same headers. @fastify/helmet instead rebuilds the helmet
 * middleware, CSP parsing included, on every request, which cost a large
 * share of a small route's throughput (SPEC §11).
 */
export function securityHeaders (config: Pick<Config, 'NODE_ENV'>): Array<[string, string]> {
  const headers = new Map<string, string>()
  const recorder = {
    setHeader: (name: string, value: string | number) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase())
  }
  helmet({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: { defaultSrc: ["'self'"] }
    },
    strictTransportSecurity: config.NODE_ENV === 'production' ? { maxAge: 31536000, includeSubDomains: true } : false
  })({} as IncomingMessage, recorder as unknown as ServerResponse, () => {})
  return [...headers]
}
