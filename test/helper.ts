import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { buildApp, type App, type BuildOptions } from '../src/app.js'
import { loadConfig, type Config } from '../src/config.js'
import type { AiOutcome } from '../src/services/ai/outcome.js'
import type { Persona } from '../src/services/sessions/store.js'
import { baseLoggerOptions } from '../src/services/logs/log-files.js'

/*
 * Domain helpers shared by the tests. Every app is the production app built
 * by src/app.ts with the production server options; only its config differs.
 */

type Test = { teardown: (fn: () => unknown) => void }

export const ROOT = new URL('..', import.meta.url).pathname

export async function tempDir (t: Test, prefix = 'lc-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A config like production's defaults, with its own log folder and any overrides. */
export async function testConfig (t: Test, overrides: Partial<Record<keyof Config, string | number>> = {}): Promise<Config> {
  // A loaded CI machine can hold the test process past the 1 s stall threshold
  // (seen): /health would then say "stalled" in tests about something else.
  // The stall tests set EVENT_LOOP_STALL_MS themselves.
  return loadConfig({ LOG_DIR: await tempDir(t), LOG_LEVEL: 'silent', PORT: 0, HOST: '127.0.0.1', EVENT_LOOP_STALL_MS: 60_000, ...overrides })
}

type Overrides = Parameters<typeof testConfig>[1]

/** The companion most tests talk to (the `companionConfig` of SPEC §2.1). */
export const persona: Persona = { name: 'Ava', personality: 'warm, playful', identity: 'a long-distance partner', gender: 'female', role: 'girlfriend' }

/** A timestamp as the server writes it (`Date#toISOString`). */
export const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

/** Overrides that keep rate limits and the slow-down out of tests about something else. */
export const NO_LIMITS = { RATE_LIMIT_MAX: 100000, AI_RATE_LIMIT_MAX: 100000, SLOW_DOWN_AFTER: 100000 } as const

/** The message of the error `/test/boom` throws: internal detail a client must never see. */
export const BOOM_MESSAGE = 'secret internal detail at /srv/app/db.js'

/** A `setup` adding `GET /test/boom`, which fails with an unexpected error: an honest 500. */
export function addBoomRoute (app: App): void {
  app.get('/test/boom', async () => { throw new Error(BOOM_MESSAGE) })
}

/** An AI outcome as the AI service reports it, for tests of what consumes outcomes. */
export function aiOutcome (result: AiOutcome['result'], details: Partial<AiOutcome> = {}): AiOutcome {
  return { operation: 'chat', provider: 'gemini', model: 'gemini-2.5-flash', streamed: false, result, success: result === 'ok' || result === 'blocked', attempts: 1, latencyMs: 100, ...details }
}

/**
 * The whole app, not listening (for `inject`), closed after the test.
 * `setup` may register test-only routes (e.g. one that throws) before the app is ready;
 * `options` are buildApp's (e.g. a session store of the test's own).
 */
export async function buildTestApp (t: Test, overrides: Overrides = {}, setup?: (app: App) => void, options: BuildOptions = {}): Promise<App> {
  const config = await testConfig(t, overrides)
  const app = await buildApp(config, pino({ level: config.LOG_LEVEL }), options)
  t.teardown(() => app.close())
  setup?.(app)
  await app.ready()
  return app
}

/** The whole app listening on a free loopback port. */
export async function startServer (t: Test, overrides: Overrides = {}, setup?: (app: App) => void, options: BuildOptions = {}): Promise<{ app: App, url: string, port: number }> {
  const app = await buildTestApp(t, overrides, setup, options)
  return { app, ...await listenOnLoopback(app) }
}

async function listenOnLoopback (app: App): Promise<{ url: string, port: number }> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { url: `http://127.0.0.1:${address.port}`, port: address.port }
}

export interface ReadLogOptions {
  /** The file may not exist (then: no lines). Without it a missing file fails the test. */
  mayBeAbsent?: boolean
}

/**
 * Parsed JSON lines of `LOG_DIR/<name>.log` (through the stable link). A
 * missing file is an error unless the test says it may be absent: otherwise
 * "nothing was logged" would pass when the log was never written at all.
 */
export async function readLog (logDir: string, name: string, options: ReadLogOptions = {}): Promise<Array<Record<string, any>>> {
  const text = await readFile(join(logDir, `${name}.log`), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' && options.mayBeAbsent === true) return ''
    throw error
  })
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line))
}

/** Polls a log until `predicate` finds a line (log writes are asynchronous; the file may not exist yet). */
export async function waitForLogLine (logDir: string, name: string, predicate: (line: Record<string, any>) => boolean, timeoutMs = 5000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = (await readLog(logDir, name, { mayBeAbsent: true })).find(predicate)
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`no matching line in ${name}.log within ${timeoutMs} ms`)
    await sleep(25)
  }
}

/** Polls `predicate` until it holds (for effects that land asynchronously, like a socket's close). */
export async function until (predicate: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'the condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

export interface ChildServer {
  child: ChildProcessWithoutNullStreams
  stdout: () => string
  stderr: () => string
  url: Promise<string>
  exited: Promise<number | null>
}

/**
 * Starts `src/server.ts` in a real child process with only the given
 * environment, in its own working folder (so a developer's `.env` is not read
 * unless the test writes one there) with its logs in `<cwd>/logs`.
 * `fileLimit` runs it under `ulimit -n <fileLimit>` (soft and hard).
 */
export async function spawnServer (t: Test, env: Record<string, string | undefined> = {}, cwd?: string, nodeArgs: string[] = [], fileLimit?: number): Promise<ChildServer & { cwd: string }> {
  const workDir = cwd ?? await tempDir(t, 'lc-proc-')
  // PORT defaults to 0 (any free port); pass `PORT: undefined` to leave it unset.
  const childEnv = Object.fromEntries(Object.entries({ HOST: '127.0.0.1', PORT: '0', ...env, PATH: process.env.PATH })
    .filter((entry): entry is [string, string] => entry[1] !== undefined))
  const argv = [process.execPath, '--import', import.meta.resolve('tsx'), ...nodeArgs, join(ROOT, 'src/server.ts')]
  const [command, ...args] = fileLimit === undefined ? argv : ['bash', '-c', `ulimit -n ${fileLimit} && exec "$0" "$@"`, ...argv]
  const child = spawn(command, args, { cwd: workDir, env: childEnv })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  const url = new Promise<string>((resolve, reject) => {
    const onData = () => {
      const match = /"port":(\d+),"msg":"ready"/.exec(out)
      if (match !== null) {
        child.stdout.off('data', onData)
        resolve(`http://127.0.0.1:${match[1]}`)
      }
    }
    child.stdout.on('data', onData)
    exited.then((code) => reject(new Error(`server exited (${code}) before ready: ${err}`)), reject)
  })
  url.catch(() => undefined)
  // A tap timeout ends this process without teardowns: take the child along.
  const killChild = () => { child.kill('SIGKILL') }
  process.once('exit', killChild)
  exited.finally(() => process.off('exit', killChild)).catch(() => undefined)
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, stdout: () => out, stderr: () => err, url, exited, cwd: workDir }
}

/**
 * The whole app with its stdout log captured (parsed lines), and a chance to
 * add test-only routes (e.g. one that throws) before it is ready.
 */
export async function buildAppWithLog (t: Test, overrides: Parameters<typeof testConfig>[1] = {}, setup?: (app: App) => void, options: BuildOptions = {}): Promise<{ app: App, config: Config, stdout: () => Array<Record<string, any>> }> {
  const config = await testConfig(t, { LOG_LEVEL: 'info', ...overrides })
  const lines: Array<Record<string, any>> = []
  const logger = pino({ ...baseLoggerOptions, level: config.LOG_LEVEL }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const app = await buildApp(config, logger, options)
  t.teardown(() => app.close())
  setup?.(app)
  await app.ready()
  return { app, config, stdout: () => lines }
}

/** `buildAppWithLog`, listening on a free loopback port (for real sockets). */
export async function startServerWithLog (t: Test, overrides: Overrides = {}, setup?: (app: App) => void, options: BuildOptions = {}) {
  const built = await buildAppWithLog(t, overrides, setup, options)
  return { ...built, ...await listenOnLoopback(built.app) }
}

export interface RawResponse { status: number, headers: IncomingHttpHeaders, body: string }

/**
 * One HTTP request on a connection of its own (`agent: false`), where fetch
 * would reuse a pooled connection or open a spare one.
 */
export function rawRequest (url: string, options: { method?: string, headers?: OutgoingHttpHeaders, body?: unknown } = {}): Promise<RawResponse> {
  const { req, response } = sendRaw(url, options)
  req.on('error', () => undefined) // reported through `response`
  return response.then(readBody)
}

/**
 * A POST without keep-alive whose request the test may destroy (exactly one
 * socket closing) or leave to the server to cut; errors are expected and ignored.
 */
export function rawPost (url: string, body: unknown, headers: OutgoingHttpHeaders = {}): { req: ReturnType<typeof httpRequest>, response: Promise<IncomingMessage> } {
  const sent = sendRaw(url, { method: 'POST', headers, body })
  sent.req.on('error', () => undefined) // destroyed or cut on purpose
  sent.response.catch(() => undefined) // not awaited when the test destroys the request first
  return sent
}

function sendRaw (url: string, { method = 'GET', headers = {}, body }: { method?: string, headers?: OutgoingHttpHeaders, body?: unknown }) {
  const json = body === undefined ? undefined : JSON.stringify(body)
  const req = httpRequest(url, { method, agent: false, headers: json === undefined ? headers : { 'content-type': 'application/json', ...headers } })
  const response = once(req, 'response').then(([response]) => response as IncomingMessage)
  req.end(json)
  return { req, response }
}

async function readBody (response: IncomingMessage): Promise<RawResponse> {
  let body = ''
  for await (const chunk of response.setEncoding('utf8')) body += chunk as string
  return { status: response.statusCode ?? 0, headers: response.headers, body }
}
