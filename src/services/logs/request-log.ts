import { isoTime } from '../iso-time.js'
import type { RollingFile } from './rolling-file.js'

/*
 * requests.log (SPEC §7): one line per completed request, the largest share
 * of a small route's cost (SPEC §11). The line has fixed fields, so it is
 * serialised by hand, once, in the shape pino writes (level, time, log,
 * fields, msg); strings go through JSON.stringify, which escapes quotes,
 * CR/LF and terminal escapes, so a value cannot forge a line. The file
 * batches the lines of one event-loop turn (turn-batch.ts).
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

const quoted = (value: string | null) => value === null ? 'null' : JSON.stringify(value)
const finiteOrNull = (value: number | null) => value !== null && Number.isFinite(value) ? String(value) : 'null'

export function requestLogLine (level: RequestLineLevel, f: RequestLineFields, msg: string, timeMs = Date.now()): string {
  return `{"level":"${level}","time":"${isoTime(timeMs)}","log":"requests","reqId":${quoted(f.reqId)},"method":${quoted(f.method)},` +
    `"route":${quoted(f.route)},"path":${quoted(f.path)},"status":${f.status},"responseTimeMs":${finiteOrNull(f.responseTimeMs)},` +
    `"ip":${quoted(f.ip)},"userAgent":${quoted(f.userAgent)},"msg":${quoted(msg)}}\n`
}

export function createRequestLog (file: RollingFile): RequestLog {
  return {
    write (level, fields, msg) {
      file.write(requestLogLine(level, fields, msg))
    }
  }
}
