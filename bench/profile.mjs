// Where our server's CPU time goes under one benchmark load: runs dist/server.js
// with --cpu-prof, drives one scenario's request with wrk, and prints the
// self time by function and by module. Proportions survive a loaded machine
// where absolute figures do not.
//
// `fanout-redis` profiles both instances of the two-instance WebSocket
// fan-out on one Redis (senders on A, receivers on B), one summary each.
//
// `--baseline NAME` profiles that baseline of bench/baselines under the same
// load too, and prints where our server spends more, in µs of CPU per
// request (self time by module and function, scaled by each server's
// measured CPU per request). For `fanout-redis` the one baseline is `floor`
// (bare-ws-redis.mjs), compared sender with sender and receiver with
// receiver, in µs per delivered message.
//
//   node bench/profile.mjs [--scenario health|session|session-404|chat|fanout-redis] [--baseline bare-same-request|floor]
//                          [--seconds 15] [--dist DIR] [--top 25]
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { wrk } from './lib/http-load.mjs'
import { pinSelf, ROOT, startNode } from './lib/processes.mjs'
import { chatRequest, createServers } from './lib/servers.mjs'
import { fanOut, wsEndpoint } from './lib/ws-load.mjs'

const { values: options } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'session' },
    seconds: { type: 'string', default: '15' },
    dist: { type: 'string' },
    baseline: { type: 'string' },
    top: { type: 'string', default: '25' }
  }
})

if (options.scenario === 'fanout-redis' && ![undefined, 'floor'].includes(options.baseline)) throw new Error('the baseline of fanout-redis is floor')
pinSelf()
const scratch = mkdtempSync(join(tmpdir(), 'lc-profile-'))
const profileDir = join(scratch, 'profile')
const { startOurs, baselineServer, redis, stopAll } = createServers(scratch)
const dist = options.dist === undefined ? undefined : resolve(options.dist)
const seconds = Number(options.seconds)
const profiling = (name) => ['--cpu-prof', '--cpu-prof-dir', join(profileDir, name)]
const profiled = (name, env) => startOurs({ name, dist, env, nodeArgs: profiling(name) })
const profiledFloor = (name, env) => startNode(join(ROOT, 'bench/baselines/bare-ws-redis.mjs'), { name, env, nodeArgs: profiling(name) })
try {
  const targets = options.scenario === 'fanout-redis' ? await profileFanOutRedis() : await profileHttp()
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const summaries = []
  for (const target of targets) {
    await target.stop()
    const dir = join(profileDir, target.name)
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))
    // Kept for Chrome DevTools (Performance → Load profile), next to the bench reports.
    const kept = join(ROOT, 'bench/results', `profile-${options.scenario}-${target.name}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`)
    copyFileSync(join(dir, file), kept)
    console.log(`\n=== ${target.name}: ${kept}`)
    summaries.push({ ...summarise(JSON.parse(readFileSync(kept, 'utf8')), Number(options.top)), cpuUsPerRequest: target.cpuUsPerRequest })
  }
  if (options.baseline !== undefined) {
    const half = summaries.length / 2
    for (let i = 0; i < half; i++) printDifference(summaries[i], summaries[half + i], targets[half + i].name, Number(options.top))
  }
} finally {
  await stopAll()
  rmSync(scratch, { recursive: true, force: true })
}

/** Our server, and the baseline if one was asked for, each profiled under the scenario's load in turn. */
async function profileHttp () {
  const targets = [await profiled('server')]
  if (options.baseline !== undefined) {
    const baseline = await baselineServer(options.baseline, 0, profiling(options.baseline))
    targets.push(Object.assign(baseline, { name: options.baseline }))
  }
  for (const target of targets) {
    const requests = {
      health: ['/health'],
      session: [`/api/sessions/${target.sessionId}`],
      'session-404': ['/api/sessions/no-such-session'],
      chat: ['/api/ai-companion/chat', await chatRequest(target)]
    }
    const [path, request] = requests[options.scenario]
    const result = await wrk(target.url + path, { connections: 50, seconds, warmupSeconds: 2, request, cpuSeconds: target.cpuSeconds })
    target.cpuUsPerRequest = result.cpuUsPerRequest
    console.log(`${target.name}, ${options.scenario}: ${result.rps.toFixed(0)} req/s under the profiler, ${result.cpuUsPerRequest.toFixed(0)} µs CPU per request (p99 ${result.p99Ms} ms, non-2xx ${result.non2xx})`)
  }
  return targets
}

/** Sender and receiver of ours (then of the floor, with --baseline floor), each pair under the same fan-out load. */
async function profileFanOutRedis () {
  const { url: REDIS_URL } = await redis()
  const deployments = [['sender', 'receiver', profiled]]
  if (options.baseline === 'floor') deployments.push(['floor-sender', 'floor-receiver', profiledFloor])
  const targets = []
  for (const [senderName, receiverName, start] of deployments) {
    const sender = await start(senderName, { REDIS_URL })
    const receiver = await start(receiverName, { REDIS_URL })
    // fanOut reads the CPU time at the start and the end of its measured period: each instance's share is kept.
    const readings = []
    const cpuSeconds = () => {
      readings.push([sender.cpuSeconds(), receiver.cpuSeconds()])
      return readings.at(-1)[0] + readings.at(-1)[1]
    }
    const result = await fanOut(wsEndpoint(sender.url), { pairs: 50, seconds, warmupSeconds: 2, tag: `profile-${senderName}`, cpuSeconds, receiverUrl: wsEndpoint(receiver.url) })
    const [senderCpu, receiverCpu] = [0, 1].map((i) => readings[1][i] - readings[0][i])
    sender.cpuUsPerRequest = result.cpuUsPerMessage * senderCpu / (senderCpu + receiverCpu)
    receiver.cpuUsPerRequest = result.cpuUsPerMessage * receiverCpu / (senderCpu + receiverCpu)
    console.log(`fanout-redis, ${senderName} and ${receiverName}: ${result.msgPerSecond.toFixed(0)} msg/s under the profiler, µs CPU per message ${sender.cpuUsPerRequest.toFixed(1)} + ${receiver.cpuUsPerRequest.toFixed(1)}, p99 ${result.p99Ms.toFixed(1)} ms`)
    targets.push(sender, receiver)
  }
  return targets
}

function moduleOf (url) {
  if (url === '') return '(native / V8)'
  if (url.startsWith('node:')) return url.replace(/^node:internal\/([^/]+).*/, 'node:$1')
  const path = url.replace(/^file:\/\//, '')
  const packaged = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  return packaged !== null ? packaged[1] : relative(ROOT, path)
}

function summarise (profile, top) {
  const selfByFunction = new Map()
  const selfByModule = new Map()
  const counts = new Map()
  for (const sample of profile.samples) counts.set(sample, (counts.get(sample) ?? 0) + 1)
  let total = 0
  let idle = 0
  for (const node of profile.nodes) {
    const hits = counts.get(node.id) ?? 0
    if (hits === 0) continue
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') { idle += hits; continue }
    total += hits
    const name = `${(functionName || '(anonymous)').slice(0, 60)} ${moduleOf(url)}${url === '' ? '' : `:${lineNumber + 1}`}`
    selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + hits)
    selfByModule.set(moduleOf(url), (selfByModule.get(moduleOf(url)) ?? 0) + hits)
  }
  const print = (title, map) => {
    console.log(`\n${title} (share of busy samples; idle was ${(100 * idle / (idle + total)).toFixed(1)} % of all)`)
    for (const [name, hits] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${(100 * hits / total).toFixed(1).padStart(5)} %  ${name}`)
    }
  }
  print('self time by module', selfByModule)
  print('self time by function', selfByFunction)
  print('total time (self + callees) by function', totalByFunction(profile, counts))
  return { selfByModule, selfByFunction, total }
}

/** Where ours spends more than the baseline: each share of busy samples times that server's CPU per request. */
function printDifference (ours, baseline, name, top) {
  const usPerRequest = (summary, map, key) => summary.cpuUsPerRequest * (map.get(key) ?? 0) / summary.total
  for (const by of ['selfByModule', 'selfByFunction']) {
    const keys = new Set([...ours[by].keys(), ...baseline[by].keys()])
    const rows = [...keys].map((key) => [key, usPerRequest(ours, ours[by], key), usPerRequest(baseline, baseline[by], key)])
    rows.sort((a, b) => (b[1] - b[2]) - (a[1] - a[2]))
    console.log(`\nours − ${name}, self time ${by === 'selfByModule' ? 'by module' : 'by function'}, µs of CPU per request (${ours.cpuUsPerRequest.toFixed(0)} against ${baseline.cpuUsPerRequest.toFixed(0)})`)
    for (const [key, mine, theirs] of rows.slice(0, top)) {
      console.log(`${(mine - theirs).toFixed(1).padStart(7)}  ${mine.toFixed(1).padStart(7)} ${theirs.toFixed(1).padStart(7)}  ${key}`)
    }
  }
}

/** Samples in which a function is on the stack, each counted once even when it recurses. */
function totalByFunction (profile, counts) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parentOf = new Map()
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)
  const totals = new Map()
  for (const [id, hits] of counts) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue
    const seen = new Set()
    for (let at = id; at !== undefined; at = parentOf.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at).callFrame
      if (url === '') continue
      const name = `${(functionName || '(anonymous)').slice(0, 60)} ${moduleOf(url)}:${lineNumber + 1}`
      if (seen.has(name)) continue
      seen.add(name)
      totals.set(name, (totals.get(name) ?? 0) + hits)
    }
  }
  return totals
}
