/*
 * `new Date(ms).toISOString()` for the timestamps of hot paths (request log
 * lines, session bodies, chat events). Formatting a date is a fifth of
 * GET /api/sessions/:id's own time, and the same millisecond comes back
 * often: every line of one log batch, a session's unchanged createdAt. The
 * strings are remembered, a bounded number, forgotten all at once when full.
 */
const MAX_REMEMBERED = 1024
const remembered = new Map<number, string>()

export function isoTime (ms: number): string {
  let text = remembered.get(ms)
  if (text === undefined) {
    if (remembered.size >= MAX_REMEMBERED) remembered.clear()
    text = new Date(ms).toISOString()
    remembered.set(ms, text)
  }
  return text
}
