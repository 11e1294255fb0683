// HTTP load: wrk (C, unpipelined keep-alive connections) for throughput, and
// an open-loop schedule of our own for latency at a fixed rate.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { LOAD_CORE, pinned } from './processes.mjs'
import { percentile, windows } from './stats.mjs'

const run = promisify(execFile)

/**
 * A wrk Lua script sending one fixed request (method, JSON body), or with
 * `bodies` the next of those JSON bodies in turn.
 */
function luaScript ({ method = 'GET', body, bodies, headers = {} }) {
  const lines = [`wrk.method = ${JSON.stringify(method)}`]
  if (body !== undefined || bodies !== undefined) lines.push('wrk.headers["Content-Type"] = "application/json"')
  if (body !== undefined) lines.push(`wrk.body = ${JSON.stringify(JSON.stringify(body))}`)
  for (const [name, value] of Object.entries(headers)) lines.push(`wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`)
  if (bodies !== undefined) {
    lines.push(`local bodies = { ${bodies.map((each) => JSON.stringify(JSON.stringify(each))).join(', ')} }`)
    lines.push('local next = 0')
    lines.push('request = function() next = next % #bodies + 1; return wrk.format(nil, nil, nil, bodies[next]) end')
  }
  return lines.join('\n') + '\n'
}

const LATENCY_UNITS = { us: 0.001, ms: 1, s: 1000 }

function parseWrk (output) {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1])
  const requests = Number(/(\d+) requests in/.exec(output)?.[1])
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)$/m.exec(output)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0)
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  return {
    rps,
    requests,
    p99Ms: p99 === null ? NaN : Number(p99[1]) * LATENCY_UNITS[p99[2]],
    non2xx,
    socketErrors: errors === null ? 0 : errors.slice(1).reduce((sum, n) => sum + Number(n), 0)
  }
}

/**
 * wrk -t1 -c<connections> for `seconds` after a `warmupSeconds` run whose
 * figures are discarded, on the load core. `request` as in luaScript.
 * With `cpuSeconds` (the server's CPU time so far), also the server's CPU
 * time per request in µs: unlike req/s, it hardly depends on how much of a
 * loaded machine the server got.
 */
export async function wrk (url, { connections, seconds, warmupSeconds, request = {}, cpuSeconds }) {
  const dir = mkdtempSync(join(tmpdir(), 'lc-wrk-'))
  try {
    const script = join(dir, 'request.lua')
    writeFileSync(script, luaScript(request))
    const once = async (duration) => {
      const [command, args] = pinned(LOAD_CORE, 'wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-s', script, url])
      const { stdout } = await run(command, args, { maxBuffer: 1 << 20 })
      return parseWrk(stdout)
    }
    if (warmupSeconds > 0) await once(warmupSeconds)
    const cpuBefore = cpuSeconds?.()
    const result = await once(seconds)
    if (cpuSeconds === undefined) return result
    return { ...result, cpuUsPerRequest: (cpuSeconds() - cpuBefore) * 1e6 / result.requests }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * `rate` requests per second, evenly spaced (open loop, as wrk2 does), over
 * at most `connections` keep-alive connections, for `seconds` after a
 * warm-up at the same rate; latency percentiles in ms. Each latency counts
 * from when its request was due, so a server that falls behind is charged
 * for the wait (no coordinated omission).
 *
 * `lateMs`: requests later than this are also reported as windows of the
 * run (`lateWindows`: when, in ms from the start, and how many), since a
 * p99 is often one such window, not a spread of slow requests.
 *
 * Hand-written: autocannon's `overallRate` is not a schedule. Each of its
 * connections sends its quota for the second back to back at the start of
 * every second, so at 300 req/s over 50 connections its p99 measured the
 * queue of 50 simultaneous requests (CPU per request × 50), not the latency
 * added at 300 req/s. wrk2 is not packaged here.
 */
export async function fixedRate (url, { rate, connections, seconds, warmupSeconds, request = {}, lateMs = Infinity }) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections })
  const bodies = request.bodies?.map((each) => JSON.stringify(each)) ??
    (request.body === undefined ? undefined : [JSON.stringify(request.body)])
  const headers = bodies === undefined ? request.headers : { 'content-type': 'application/json', ...request.headers }
  let next = 0

  /** Sends one request; resolves with its status, or 0 for a socket error. */
  const send = () => new Promise((resolve) => {
    const outgoing = httpRequest(url, { method: request.method ?? 'GET', headers, agent }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode))
    })
    outgoing.on('error', () => resolve(0))
    outgoing.end(bodies?.[next++ % bodies.length])
  })

  async function schedule (durationSeconds) {
    const total = Math.round(durationSeconds * rate)
    const latencies = []
    const late = []
    const pending = []
    let non2xx = 0
    let socketErrors = 0
    const started = performance.now()
    let sent = 0
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000))
        for (; sent < due; sent++) {
          const dueAt = started + sent * 1000 / rate
          pending.push(send().then((status) => {
            const latency = performance.now() - dueAt
            latencies.push(latency)
            if (latency > lateMs) late.push(dueAt - started)
            if (status === 0) socketErrors++
            else if (status < 200 || status > 299) non2xx++
          }))
        }
        if (sent === total) {
          clearInterval(timer)
          resolve()
        }
      }, 1)
    })
    await Promise.all(pending)
    latencies.sort((a, b) => a - b)
    return {
      rps: latencies.length * 1000 / (performance.now() - started),
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      non2xx,
      socketErrors,
      lateWindows: windows(late.sort((a, b) => a - b), 200)
    }
  }

  try {
    if (warmupSeconds > 0) await schedule(warmupSeconds)
    return await schedule(seconds)
  } finally {
    agent.destroy()
  }
}
