import { isoTime } from '../iso-time.js'
import type { RollingFile } from './rolling-file.js'

/*
 * requests.log (SPEC §7): one line per completed request, the largest share
 * of a small route's cost (SPEC §11). The line has fixed fields, so it is
 * serialised by hand, once, in the shape pino writes (level, time, log,
 * fields, msg). A string is written as it is only when it is plain
 * printable ASCII; any other goes through JSON.stringify, which escapes
 * quotes, CR/LF and terminal escapes, so a value cannot forge a line. The
 * file batches the lines of one event-loop turn (turn-batch.ts).
 */

export interface RequestLineFields {
  reqId: string
  method: string
  route: string | null
  path: string
  status: number
  responseTimeMs: number | null
  ip: string
  userAgent: string | null
}

export type RequestLineLevel = 'info' | 'warn'

export interface RequestLog {
  write: (level: RequestLineLevel, fields: RequestLineFields, msg: string) => void
}

/** Printable ASCII without `"` or `\`: such a string is its own JSON, quoted. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

// Testing for the usual plain value first is a third cheaper than JSON.stringify.
const quoted = (value: string | null) => value === null ? 'null' : PLAIN.test(value) ? `"${value}"` : JSON.stringify(value)

/**
 * Milliseconds to two decimals, as `String(Math.round(ms * 100) / 100)` writes
 * them but from integers: formatting a fraction costs five times as much.
 */
function milliseconds (ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return 'null'
  const hundredths = Math.round(ms * 100)
  if (hundredths < 0 || !Number.isSafeInteger(hundredths)) return String(hundredths / 100)
  const whole = Math.trunc(hundredths / 100)
  const fraction = hundredths - whole * 100
  if (fraction === 0) return String(whole)
  return fraction % 10 === 0 ? `${whole}.${fraction / 10}` : `${whole}.${fraction < 10 ? '0' : ''}${fraction}`
}

export function requestLogLine (level: RequestLineLevel, f: RequestLineFields, msg: string, timeMs = Date.now()): string {
  return `{"level":"${level}","time":"${isoTime(timeMs)}","log":"requests","reqId":${quoted(f.reqId)},"method":${quoted(f.method)},` +
    `"route":${quoted(f.route)},"path":${quoted(f.path)},"status":${f.status},"responseTimeMs":${milliseconds(f.responseTimeMs)},` +
    `"ip":${quoted(f.ip)},"userAgent":${quoted(f.userAgent)},"msg":${quoted(msg)}}\n`
}

export function createRequestLog (file: RollingFile): RequestLog {
  return {
    write (level, fields, msg) {
      file.write(requestLogLine(level, fields, msg))
    }
  }
}
