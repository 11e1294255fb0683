// HTTP load: wrk (C, unpipelined keep-alive connections) for throughput, and
// autocannon's fixed overall rate (wrk2-style: requests are sent on a
// schedule, so a slow server cannot slow the load down) for latency at a rate.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import autocannon from 'autocannon'
import { LOAD_CORE, pinned } from './processes.mjs'

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
 * `rate` requests per second in total over `connections` connections, for
 * `seconds` (after a warm-up at the same rate); latency percentiles in ms.
 */
export async function fixedRate (url, { rate, connections, seconds, warmupSeconds, request = {} }) {
  const json = request.body !== undefined || request.bodies !== undefined
  const bodies = request.bodies?.map((each) => JSON.stringify(each))
  let next = 0
  const options = {
    url,
    connections,
    overallRate: rate,
    method: request.method ?? 'GET',
    body: request.body === undefined ? undefined : JSON.stringify(request.body),
    headers: json ? { 'content-type': 'application/json', ...request.headers } : request.headers,
    // With `bodies`, each request takes the next one in turn.
    ...(bodies === undefined ? {} : { requests: [{ setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }) }] })
  }
  if (warmupSeconds > 0) await autocannon({ ...options, duration: warmupSeconds })
  const result = await autocannon({ ...options, duration: seconds })
  return {
    rps: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    socketErrors: result.errors + result.timeouts
  }
}
