import { lstat, mkdir, readdir, readlink, symlink, unlink } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { pino, type Logger, type LoggerOptions } from 'pino'
import { createRequestLog, type RequestLog } from './request-log.js'
import { openRollingFile, type RollingFile } from './rolling-file.js'
import { batchPerTurn } from './turn-batch.js'

/*
 * The four JSON-lines logs of SPEC §7. Each lives in its own folder because
 * pino-roll names its "current" link `current.log` per folder; a stable link
 * `LOG_DIR/<name>.log → <name>/current.log` keeps `tail -F logs/errors.log`
 * working across rotations (rolling-file.ts). The files are written from
 * the main thread (no transport worker: on a two-core machine a worker per
 * file competes with the request path), in one write per file and
 * event-loop turn (turn-batch.ts); requests.log lines have their own
 * serialiser (request-log.ts).
 */

export const LOG_NAMES = ['requests', 'ai-requests', 'errors', 'server-stats'] as const
export type LogName = typeof LOG_NAMES[number]

const FIXED_FIELD_LOGS = new Set<LogName>(['requests', 'ai-requests'])

/** Secrets that must never be written, wherever they appear in a log object. */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]',
  'headers.authorization', 'headers.cookie', 'headers["set-cookie"]',
  'apiKey', '*.apiKey', 'GEMINI_API_KEY', '*.GEMINI_API_KEY', 'OPENAI_API_KEY', '*.OPENAI_API_KEY', 'STATS_TOKEN', '*.STATS_TOKEN'
]

export const baseLoggerOptions: LoggerOptions = {
  timestamp: pino.stdTimeFunctions.isoTime,
  redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  formatters: { level: (label) => ({ level: label }) }
}

export interface LogFilesOptions {
  dir: string
  maxSize: string
  retentionDays: number
  now?: () => number
}

export type LogFiles = Record<LogName, Logger> & {
  /** requests.log's per-request line, serialised by hand. */
  requestLog: RequestLog
  /** Deletes rotated files older than the retention period; returns how many. */
  prune: () => Promise<number>
  /** Writes out everything buffered and closes the files. */
  close: () => Promise<void>
}

const DAY_MS = 24 * 60 * 60 * 1000

/**
 * A rotated file of one of the four logs, as pino-roll names it
 * (`requests.2026-01-01.3.log`, or `requests.3.log` without a date format).
 */
const ROTATED_FILE = new RegExp(`^(${LOG_NAMES.join('|')})\\.(\\d{4}-\\d\\d-\\d\\d\\.)?\\d+\\.log$`)

export async function createLogFiles ({ dir, maxSize, retentionDays, now = Date.now }: LogFilesOptions): Promise<LogFiles> {
  const root = resolve(dir)
  await mkdir(root, { recursive: true })
  const streams = await Promise.all(LOG_NAMES.map(async (name) => batchPerTurn(await openLog(root, name, parseSize(maxSize)))))
  const requestLog = createRequestLog(streams[LOG_NAMES.indexOf('requests')])
  // A crash ends the process without close(): what is buffered is written synchronously.
  const writeOutSync = () => {
    for (const stream of streams) stream.flushSync()
  }
  process.once('exit', writeOutSync)
  const loggers = Object.fromEntries(LOG_NAMES.map((name, index) => {
    // requests and ai-requests lines are fixed field sets that never hold a
    // header or a key; skipping redaction there keeps the per-request cost down.
    const redact = FIXED_FIELD_LOGS.has(name) ? undefined : baseLoggerOptions.redact
    return [name, pino({ ...baseLoggerOptions, redact, base: { log: name } }, streams[index])]
  })) as Record<LogName, Logger>

  async function prune (): Promise<number> {
    const cutoff = now() - retentionDays * DAY_MS
    // The files the streams write to now, whatever their age.
    const active = new Set(await Promise.all(LOG_NAMES.map(async (name) => {
      const target = await readlink(join(root, name, 'current.log')).catch(() => undefined)
      return target === undefined ? undefined : resolve(root, name, target)
    })))
    let removed = 0
    // Anywhere under LOG_DIR: earlier layouts left rotated files directly in it.
    for (const file of await readdir(root, { recursive: true })) {
      if (!ROTATED_FILE.test(basename(file))) continue
      const path = join(root, file)
      const info = await lstat(path).catch(() => undefined)
      if (info === undefined || !info.isFile() || info.mtimeMs >= cutoff || active.has(path)) continue
      await unlink(path).catch(() => undefined)
      removed++
    }
    return removed
  }

  async function close (): Promise<void> {
    process.off('exit', writeOutSync)
    await Promise.all(streams.map((stream) => stream.end()))
  }

  return { ...loggers, requestLog, prune, close }
}

const SIZE_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** `500k`, `10m`, `1g` → bytes; a bare number is megabytes, as pino-roll reads it (the config schema admits nothing else). */
function parseSize (size: string): number {
  const unit = SIZE_UNITS[size.at(-1) ?? '']
  return unit === undefined ? Number(size) * SIZE_UNITS.m : Number(size.slice(0, -1)) * unit
}

async function openLog (root: string, name: LogName, maxBytes: number): Promise<RollingFile> {
  const folder = join(root, name)
  // pino-roll links current.log synchronously, before SonicBoom's own mkdir.
  await mkdir(folder, { recursive: true })
  const file = await openRollingFile({ folder, name, maxBytes })
  await linkStable(join(root, `${name}.log`), join(name, 'current.log'))
  return file
}

async function linkStable (linkPath: string, target: string): Promise<void> {
  const existing = await lstat(linkPath).catch(() => undefined)
  if (existing?.isSymbolicLink() === true) return
  if (existing !== undefined) await unlink(linkPath)
  await symlink(target, linkPath)
}
