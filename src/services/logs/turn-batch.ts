import type { RollingFile } from './rolling-file.js'

/**
 * A log file whose lines of one event-loop turn reach it in one write: the
 * files are written synchronously (a system call per write), and under load
 * many requests complete in the same turn. Nothing is lost: `flush` and
 * `flushSync` write out what is pending first.
 */
export function batchPerTurn (file: RollingFile): RollingFile {
  let pending = ''
  let scheduled = false

  function writePending (): void {
    scheduled = false
    if (pending === '') return
    const lines = pending
    pending = ''
    file.write(lines)
  }

  return {
    write (lines) {
      pending += lines
      if (!scheduled) {
        scheduled = true
        setImmediate(writePending)
      }
      return true
    },
    flush (callback) {
      writePending()
      file.flush(callback)
    },
    flushSync () {
      writePending()
      file.flushSync()
    },
    async end () {
      writePending()
      await file.end()
    },
    get file () { return file.file }
  }
}
