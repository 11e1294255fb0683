import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from '../src/config.js'
import { NO_LIMITS } from './helper.js'

/*
 * What the fake upstream APIs (fake-gemini.ts, fake-openai.ts) share: a
 * loopback HTTP server on port 0 whose answers each test scripts in order
 * (then a default answer), recording every request it received, how many
 * ran at once, and whether the caller hung up before the answer was whole.
 * Each fake only says how its API's requests look and how it answers.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface Recorded {
  /** The caller closed the connection before the answer was complete. */
  abandoned: boolean
}

/** How a step streams its events; shared by both fakes' steps. */
export interface StreamTiming {
  /** Streamed: destroy the connection after this many events. */
  breakAfterChunks?: number
  chunkDelayMs?: number
}

export interface FakeApi<Step, Record extends Recorded> {
  /** The recorded request, or undefined for a request the fake does not serve (answered 404 by `notFound`). */
  record: (req: IncomingMessage, body: string) => Record | undefined
  notFound: (res: ServerResponse) => void
  answer: (step: Step, record: Record, res: ServerResponse) => Promise<void>
}

export async function startFakeApi<Step, Record extends Recorded> (t: Test, api: FakeApi<Step, Record>, defaultStep: Step) {
  const script: Step[] = []
  const requests: Record[] = []
  let fallback = defaultStep
  let inFlight = 0
  let maxInFlight = 0
  const waiters: Array<() => void> = []

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { raw += chunk })
    req.on('end', () => {
      const record = api.record(req, raw)
      if (record === undefined) {
        api.notFound(res)
        return
      }
      requests.push(record)
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      res.on('close', () => {
        inFlight--
        if (!res.writableFinished) record.abandoned = true
      })
      waiters.splice(0).forEach((wake) => wake())
      api.answer(script.shift() ?? fallback, record, res).catch(() => res.destroy())
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    /** Answers for the next requests, in order; afterwards the default answer. */
    script: (...steps: Step[]) => { script.push(...steps) },
    setDefault: (step: Step) => { fallback = step },
    get inFlight () { return inFlight },
    get maxInFlight () { return maxInFlight },
    /** Resolves once `count` requests have arrived in total. */
    async waitForRequests (count: number, timeoutMs = 5000): Promise<void> {
      const deadline = Date.now() + timeoutMs
      while (requests.length < count) {
        if (Date.now() > deadline) throw new Error(`the fake API got ${requests.length} of ${count} requests`)
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(50)])
      }
    }
  }
}

/**
 * Writes Server-Sent Events `data:` lines one by one, as the step's timing
 * says; false when the connection was broken or closed on the way.
 */
export async function writeEvents (res: ServerResponse, payloads: string[], { breakAfterChunks, chunkDelayMs }: StreamTiming): Promise<boolean> {
  for (const [index, payload] of payloads.entries()) {
    if (index === breakAfterChunks) {
      // Let the events already written reach the caller before the connection breaks.
      await sleep(30)
      res.destroy()
      return false
    }
    await new Promise((resolve) => res.write(`data: ${payload}\r\n\r\n`, resolve))
    if (chunkDelayMs !== undefined) await sleep(chunkDelayMs)
    if (res.destroyed) return false
  }
  return true
}

/** What every fake's step may say besides its answer. */
export interface StepTiming {
  delayMs?: number
  /** Never answer (until the caller gives up). */
  hang?: boolean
  /** Answer 307 to this URL instead. */
  redirect?: string
}

/** Waits as the step says; false when the step has answered already (a redirect), never answers, or the caller left meanwhile. */
export async function beforeAnswer (step: StepTiming, res: ServerResponse): Promise<boolean> {
  if (step.hang === true) return false
  if (step.delayMs !== undefined) await sleep(step.delayMs)
  if (step.redirect !== undefined) {
    res.writeHead(307, { location: step.redirect }).end()
    return false
  }
  return !res.destroyed
}

/**
 * Where a fake's `redirect` step points: a loopback server that records
 * every request reaching it (method, path and the Gemini key header), so a
 * test can show that nothing followed the redirect.
 */
export async function startRedirectTarget (t: Test) {
  const received: Array<{ method?: string, url?: string, apiKey?: string }> = []
  const server = createServer((req, res) => {
    received.push({ method: req.method, url: req.url, apiKey: req.headers['x-goog-api-key'] as string | undefined })
    res.end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { received, url: (path: string) => origin + path }
}

export type EnvOverrides = Partial<Record<keyof Config, string | number>>

/** Fast retries and limits that never interfere, for apps talking to a fake (tests override what they exercise). */
export const FAST_AI_ENV: EnvOverrides = {
  AI_RETRY_BASE_MS: 10,
  AI_TIMEOUT_MS: 3000,
  ...NO_LIMITS
}
