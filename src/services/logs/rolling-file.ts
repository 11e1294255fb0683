import { once } from 'node:events'
import { renameSync, symlinkSync, unlinkSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import roll from 'pino-roll'
import type { SonicBoom } from 'sonic-boom'

/*
 * One log file rotated daily and at a size. pino-roll opens the file
 * (continuing the numbering of files an earlier process left), keeps the
 * `current.log` link and rolls daily. The size rotation is ours: pino-roll
 * rolls by size only on SonicBoom's `drain`, i.e. once the stream is idle,
 * so under steady load it kept writing past the size and, when it finally
 * rolled, pointed the link at an empty file while the newest lines sat in
 * the old one. Here a write that would take the file past its size first
 * switches to the next file and its link, so the newest line is always in
 * the file the link names, and no file passes the size unless a single line
 * is larger than it.
 *
 * Writes are synchronous (`sync: true`, not pino's default): a write, a switch
 * to the next file and the link happen in order with nothing in flight, so
 * the rotation is deterministic, close and exit lose nothing, and no worker
 * thread competes for the CPU. Busy logs stay cheap because their lines are
 * batched before they get here (turn-batch.ts).
 */

export interface RollingFile {
  /** Appends whole lines (one or many, each ending in a newline). */
  write: (lines: string) => boolean
  /** Calls back once everything written so far is in the file (used by pino's logger.flush). */
  flush: (callback?: (error?: Error) => void) => void
  /** Writes out what is buffered, synchronously (process exit). */
  flushSync: () => void
  /** Writes out everything and closes the file. */
  end: () => Promise<void>
  /** The file written now. */
  readonly file: string
}

export interface RollingFileOptions {
  folder: string
  name: string
  maxBytes: number
}

/** `requests.2026-01-01.3.log` → `requests.2026-01-01.4.log` */
const nextFileName = (file: string) => file.replace(/\.(\d+)\.log$/, (_, number: string) => `.${Number(number) + 1}.log`)

export async function openRollingFile ({ folder, name, maxBytes }: RollingFileOptions): Promise<RollingFile> {
  const stream: SonicBoom = await roll({
    file: join(folder, name),
    extension: '.log',
    frequency: 'daily',
    dateFormat: 'yyyy-MM-dd',
    symlink: true,
    sync: true
  })
  // Each reopen adds a one-shot 'ready' listener (closing the file left),
  // released on the next tick in sync mode: one batch that spans many files
  // (a small LOG_MAX_SIZE) adds many at once, which is no leak.
  stream.setMaxListeners(0)
  const link = join(folder, 'current.log')
  // SonicBoom's file name (null until it opened; reopen sets it), not in its type declarations.
  const named = stream as unknown as { file: string | null }
  if (named.file === null) await once(stream, 'ready')
  const currentFile = () => named.file as string
  // The size of the file written now; pino-roll's daily roll starts a new one.
  let sizedFile = currentFile()
  let size = await stat(sizedFile).then((info) => info.size, () => 0)

  /**
   * Points `current.log` at `file` atomically (a new link renamed over it),
   * so a reader never finds no link. Synchronous: rotation is rare, and the
   * link must name the new file before the next line is written.
   */
  function relink (file: string): void {
    const temporary = `${link}.${process.pid}.tmp`
    unlinkQuietly(temporary)
    symlinkSync(basename(file), temporary)
    renameSync(temporary, link)
  }

  function rollOver (): void {
    const next = nextFileName(sizedFile)
    stream.reopen(next)
    relink(next)
    sizedFile = next
    size = 0
  }

  function write (lines: string): boolean {
    if (currentFile() !== sizedFile) {
      sizedFile = currentFile()
      size = 0
    }
    const bytes = Buffer.byteLength(lines)
    if (size + bytes <= maxBytes) {
      size += bytes
      return stream.write(lines)
    }
    // Fill this file up to the size with whole lines (a fresh file takes at
    // least one, however long); the rest starts the next file.
    const buffer = Buffer.from(lines)
    const room = maxBytes - size
    let cut = room > 0 ? buffer.lastIndexOf(0x0a, room - 1) : -1
    if (cut === -1 && size === 0) cut = buffer.indexOf(0x0a)
    if (cut === buffer.length - 1 || (cut === -1 && size === 0)) {
      size += bytes
      return stream.write(lines)
    }
    if (cut !== -1) {
      size += cut + 1
      stream.write(buffer.subarray(0, cut + 1).toString())
    }
    rollOver()
    return write(buffer.subarray(cut + 1).toString())
  }

  return {
    write,
    flush: (callback) => { stream.flush(callback) },
    flushSync: () => {
      try {
        stream.flushSync()
      } catch {
        // Not open yet or already closed: nothing buffered that could still be written.
      }
    },
    end: () => new Promise<void>((resolve) => {
      stream.once('close', () => resolve())
      stream.end()
    }),
    get file () { return sizedFile }
  }
}

const unlinkQuietly = (path: string) => { try { unlinkSync(path) } catch {} }
