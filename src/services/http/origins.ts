import { parseOrigins, type Config } from '../../config.js'

// Vite, CRA and friends on the developer's own machine (SPEC §6).
const DEV_ORIGIN = /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/

/**
 * The browser origins allowed to call the API and open WebSockets: the
 * CORS_ORIGIN list, plus localhost origins in development. Used by CORS and
 * by the WebSocket upgrade check, so both always agree.
 */
export function createOriginPolicy (config: Pick<Config, 'CORS_ORIGIN' | 'NODE_ENV'>): (origin: string) => boolean {
  const allowed = new Set(parseOrigins(config.CORS_ORIGIN))
  const allowDev = config.NODE_ENV === 'development'
  return (origin) => allowed.has(origin) || (allowDev && DEV_ORIGIN.test(origin))
}
