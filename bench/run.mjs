// `npm run bench`: every figure of SPEC §11, ours side by side with the
// baselines under bench/baselines/, in interleaved rounds, printed as a table
// of ratios with the machine, Node.js version, pinning and load settings.
//
//   node bench/run.mjs [--only health,session,session-404,chat,chat-p99,ws-idle,ws-fanout,ws-fanout-redis,soak,soak-redis]
//                      [--quick] [--rounds N] [--seconds N] [--soak-requests N]
//                      [--soak-cycles N] [--compare-dist DIR]
//
// --compare-dist runs a second build of our server (e.g. a copy of dist/
// from before a change, kept under bench/results/) as an extra column, for
// before/after figures measured side by side, and adds a row of the change
// itself: ours − before in server CPU, round by round. Many short rounds
// (--rounds 8 --seconds 5) measure a change of a few µs best.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { fixedRate, wrk } from './lib/http-load.mjs'
import { hasTaskset, LOAD_CORE, pinSelf, ROOT, SERVER_CORE } from './lib/processes.mjs'
import { chatRequest, createServers } from './lib/servers.mjs'
import { closeAll, fanOut, openIdle, wsEndpoint } from './lib/ws-load.mjs'
import { soak } from './soak.mjs'

const { values: options } = parseArgs({
  options: {
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    'soak-requests': { type: 'string' },
    'soak-cycles': { type: 'string' },
    'compare-dist': { type: 'string' }
  }
})

const SCENARIOS = ['health', 'session', 'session-404', 'chat', 'chat-p99', 'ws-idle', 'ws-fanout', 'ws-fanout-redis', 'soak', 'soak-redis']
const only = options.only?.split(',') ?? SCENARIOS.filter((name) => !name.startsWith('soak') || !options.quick)
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario ${name}; one of ${SCENARIOS.join(', ')}`)

const settings = {
  connections: 50,
  warmupSeconds: options.quick ? 1 : 3,
  seconds: Number(options.seconds ?? (options.quick ? 3 : 10)),
  rounds: Number(options.rounds ?? (options.quick ? 1 : 3)),
  chatRate: 300,
  upstreamMs: 50,
  wsPairs: 50,
  wsRate: 10_000,
  redisWsRate: 2000,
  soakRequests: Number(options['soak-requests'] ?? 1_000_000),
  soakCycles: Number(options['soak-cycles'] ?? 100_000)
}

pinSelf()
const startedAt = new Date()
const loadBefore = loadavg()
const scratch = mkdtempSync(join(tmpdir(), 'lc-bench-'))
const resultsDir = join(ROOT, 'bench/results')
mkdirSync(resultsDir, { recursive: true })

const { startOurs, ours, oursOnRedis, bareWsOnRedis, redis, baselineServer, captureFixtures, stopAll } = createServers(scratch)

const candidates = () => options['compare-dist'] === undefined
  ? [['ours', (latencyMs) => ours(undefined, latencyMs)]]
  : [['ours', (latencyMs) => ours(undefined, latencyMs)], ['before', (latencyMs) => ours(resolve(options['compare-dist']), latencyMs, 'before')]]

/* ---------- the scenarios ---------- */

/**
 * The floor against a second process of itself: how far two identical
 * servers measure apart in this run, the noise any ratio to the floor carries.
 */
const FLOOR_NOISE = { 'floor-again': [['floor', 'info']] }

/**
 * Each scenario: the servers it compares (name → start), one measurement,
 * the figure to compare and the ratios with their SPEC §11 targets;
 * `peerRatios`: a baseline's own ratios to others, by its name.
 */
const scenarios = {
  health: {
    title: 'GET /health',
    servers: () => [...candidates(), ['bare', () => baselineServer('bare')]],
    measure: (target) => wrk(`${target.url}/health`, { ...settings, cpuSeconds: target.cpuSeconds }),
    figure: 'rps',
    ratios: [['bare', '≥', 0.8]]
  },
  session: {
    title: 'GET /api/sessions/:id (200)',
    servers: () => [...candidates(), ...['floor', 'floor-again', 'floor-required', 'fastify-defaults', 'express', 'bare'].map((name) => [name, () => baselineServer(name)])],
    measure: (target) => wrk(`${target.url}/api/sessions/${target.sessionId}`, { ...settings, cpuSeconds: target.cpuSeconds }),
    figure: 'rps',
    ratios: [['express', '≥', 4], ['fastify-defaults', '≥', 1.5], ['floor', '≥', 0.9], ['floor-required', 'info'], ['bare', 'info']],
    // How far the required work alone, written directly, gets against the same targets.
    peerRatios: { 'floor-required': [['express', 'info'], ['fastify-defaults', 'info'], ['floor', 'info']], ...FLOOR_NOISE }
  },
  'session-404': {
    title: 'GET /api/sessions/:id (404)',
    servers: () => [...candidates(), ...['floor', 'floor-again', 'floor-required', 'bare'].map((name) => [name, () => baselineServer(name)])],
    measure: (target) => wrk(`${target.url}/api/sessions/no-such-session`, { ...settings, cpuSeconds: target.cpuSeconds }),
    figure: 'rps',
    ratios: [['floor', '≥', 0.9], ['floor-required', 'info'], ['bare', 'info']],
    peerRatios: { 'floor-required': [['floor', 'info']], ...FLOOR_NOISE }
  },
  chat: {
    title: 'POST /api/ai-companion/chat, max (fake Gemini 0 ms)',
    servers: () => [...candidates(), ...['bare', 'bare-same-request', 'bare-same-fetch', 'express'].map((name) => [name, () => baselineServer(name)])],
    measure: async (target) => wrk(`${target.url}/api/ai-companion/chat`, { ...settings, request: await chatRequest(target), cpuSeconds: target.cpuSeconds }),
    figure: 'rps',
    ratios: [['bare', '≥', 0.85], ['bare-same-request', '≥', 0.85], ['bare-same-fetch', 'info'], ['express', 'info']]
  },
  'chat-p99': {
    title: `chat at ${settings.chatRate} req/s, ${settings.upstreamMs} ms upstream: p99 − upstream`,
    servers: () => [
      ...candidates().map(([name, start]) => [name, () => start(settings.upstreamMs)]),
      ...['bare', 'bare-same-request', 'bare-same-fetch'].map((name) => [name, () => baselineServer(name, settings.upstreamMs)])
    ],
    measure: async (target) => {
      // A request 40 ms over the upstream time is late: reported as windows, which is what a p99 here usually is.
      const result = await fixedRate(`${target.url}/api/ai-companion/chat`, { ...settings, rate: settings.chatRate, request: await chatRequest(target), lateMs: settings.upstreamMs + 40 })
      return { ...result, addedP99Ms: result.p99Ms - settings.upstreamMs }
    },
    figure: 'addedP99Ms',
    ratios: [['bare', '≤', 1.3], ['bare-same-request', '≤', 1.3], ['bare-same-fetch', 'info']]
  },
  'ws-idle': {
    title: 'WebSocket idle connections: KiB RSS each',
    servers: () => [...candidates(), ['bare-ws', () => baselineServer('bare-ws')], ['express', () => baselineServer('express')]],
    rounds: 1, // opening ~20,000 connections per server takes a while; one round
    measure: async (target, name) => {
      const count = idleCount()
      const path = name === 'express' ? '/socket.io/?EIO=4&transport=websocket' : '/ws'
      const before = target.rssKiB()
      const sockets = await openIdle(`ws://127.0.0.1:${target.port}${path}`, count)
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const after = target.rssKiB()
      await closeAll(sockets)
      return { count, kiBEach: (after - before) / count }
    },
    figure: 'kiBEach',
    absolute: ['≤', 8],
    ratios: [['bare-ws', 'info'], ['express', 'info']]
  },
  'ws-fanout': {
    title: `WebSocket 2-person fan-out (${settings.wsPairs} sessions)`,
    servers: () => [...candidates(), ['bare-ws', () => baselineServer('bare-ws')]],
    measure: async (target, name, round) => {
      const url = wsEndpoint(target.url)
      const saturated = await fanOut(url, { ...settings, pairs: settings.wsPairs, tag: `${name}-s${round}`, cpuSeconds: target.cpuSeconds })
      const atRate = await fanOut(url, { ...settings, pairs: settings.wsPairs, rate: settings.wsRate, tag: `${name}-r${round}` })
      return { msgPerSecond: saturated.msgPerSecond, cpuUsPerMessage: saturated.cpuUsPerMessage, p99AtRateMs: atRate.p99Ms, deliveredAtRate: atRate.msgPerSecond }
    },
    figure: 'msgPerSecond',
    ratios: [['bare-ws', '≥', 0.7]],
    extra: { figure: 'p99AtRateMs', title: `p99 delivery at ${settings.wsRate} msg/s`, ratios: [['bare-ws', '≤', 1.5]] }
  },
  'ws-fanout-redis': {
    title: `WebSocket 2-person fan-out, sender and receiver on two instances sharing one Redis (${settings.wsPairs} sessions)`,
    // "ours": the two instances on Redis; "single": one instance, in memory;
    // "floor": two bare `ws` instances doing the same Redis work, and bare-ws
    // its single-instance counterpart: how far this machine lets the ratio go.
    servers: () => [
      ['ours', () => oursOnRedis()],
      ...(options['compare-dist'] === undefined ? [] : [['before', () => oursOnRedis(resolve(options['compare-dist']), 'before on Redis', 'before:')]]),
      ['single', () => ours()], ['floor', bareWsOnRedis], ['bare-ws', () => baselineServer('bare-ws')]
    ],
    measure: async (target, name, round) => {
      const [senderUrl, receiverUrl] = (target.urls ?? [target.url, target.url]).map(wsEndpoint)
      const options = { ...settings, pairs: settings.wsPairs, receiverUrl }
      const redisBefore = target.urls === undefined ? undefined : (await redis()).commandStats()
      const saturated = await fanOut(senderUrl, { ...options, tag: `${name}-redis-s${round}`, cpuSeconds: target.cpuSeconds })
      const atRate = await fanOut(senderUrl, { ...options, rate: settings.redisWsRate, tag: `${name}-redis-r${round}` })
      const redisAfter = target.urls === undefined ? undefined : (await redis()).commandStats()
      return {
        msgPerSecond: saturated.msgPerSecond,
        cpuUsPerMessage: saturated.cpuUsPerMessage,
        p99AtRateMs: atRate.p99Ms,
        deliveredAtRate: atRate.msgPerSecond,
        // Redis' own time in scripts per message appended to the stream (the recording script
        // dominates, sent whole by ours, by SHA by the floor; both record the messages of one
        // tick in one call): the Redis part of the cost.
        ...(redisAfter === undefined ? {} : { redisUsPerMessage: (since(redisBefore, redisAfter, 'eval').usec + since(redisBefore, redisAfter, 'evalsha').usec) / since(redisBefore, redisAfter, 'xadd').calls })
      }
    },
    figure: 'msgPerSecond',
    ratios: [['single', '≥', 0.5], ['floor', 'info']],
    peerRatios: { floor: [['bare-ws', 'info']] },
    absolute: ['≤', 5, 'p99AtRateMs']
  }
}

/** A command's calls and time (INFO commandstats) between two readings. */
function since (before, after, command) {
  const at = (stats) => stats[command] ?? { calls: 0, usec: 0 }
  return { calls: at(after).calls - at(before).calls, usec: at(after).usec - at(before).usec }
}

/**
 * Idle connections: as many as our server accepts at this open-file limit
 * (HTTP_MAX_CONNECTIONS defaults to 80 % of it, the rest kept for log files
 * and Redis; past it connections are refused by design), the same count
 * for every server.
 */
function idleCount () {
  if (options.quick) return 2000
  return Math.max(1000, Math.min(20_000, Math.floor(openFileLimit() * 0.8) - 100))
}

function openFileLimit () {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8')
    return Number(/Max open files\s+(\d+)/.exec(limits)[1])
  } catch {
    return 1024
  }
}

/* ---------- running and reporting ---------- */

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const fmt = (value) => !Number.isFinite(value) ? 'n/a' : Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2)

/**
 * `invert`: a cost (CPU µs per request), so the ratio is theirs / ours,
 * comparable to a throughput ratio. `subjects`: whose ratios these are.
 */
function ratioRows (title, figures, figure, ratios, invert = false, subjects = ['ours', 'before']) {
  const rows = []
  for (const name of Object.keys(figures).filter((n) => subjects.includes(n))) {
    for (const [other, comparison, targetValue] of ratios) {
      if (figures[other] === undefined) continue
      const perRound = figures[name].map((result, round) => invert
        ? figures[other][round][figure] / result[figure]
        : result[figure] / figures[other][round][figure])
      const met = comparison === 'info' ? '' : (comparison === '≥' ? median(perRound) >= targetValue : median(perRound) <= targetValue) ? 'yes' : 'NO'
      rows.push({
        scenario: title,
        compared: `${name} / ${other}`,
        ours: fmt(median(figures[name].map((r) => r[figure]))),
        theirs: fmt(median(figures[other].map((r) => r[figure]))),
        ratio: fmt(median(perRound)),
        range: perRound.length > 1 ? `${fmt(Math.min(...perRound))}–${fmt(Math.max(...perRound))}` : '',
        target: comparison === 'info' ? '' : `${comparison} ${targetValue}`,
        met
      })
    }
  }
  return rows
}

/**
 * --compare-dist: the change itself, as ours − before in server CPU per
 * request (or delivered message), round by round. Both builds share each
 * round's machine, so on a noisy one the per-round difference is far
 * steadier than either build's ratio to a baseline.
 */
function changeRows (title, figures) {
  if (figures.before === undefined) return []
  return [['cpuUsPerRequest', 'request'], ['cpuUsPerMessage', 'delivered message']]
    .filter(([figure]) => figures.ours[0]?.[figure] !== undefined)
    .map(([figure, unit]) => {
      const differences = figures.ours.map((result, round) => result[figure] - figures.before[round][figure])
      const lower = differences.filter((difference) => difference < 0).length
      return {
        scenario: `${title}: server CPU µs per ${unit}, the change (ratio column = median of ours − before per round)`,
        compared: 'ours − before',
        ours: fmt(median(figures.ours.map((result) => result[figure]))),
        theirs: fmt(median(figures.before.map((result) => result[figure]))),
        ratio: fmt(median(differences)),
        range: `${fmt(Math.min(...differences))} to ${fmt(Math.max(...differences))}; lower in ${lower} of ${differences.length}`,
        target: '',
        met: ''
      }
    })
}

async function runScenario (key) {
  const scenario = scenarios[key]
  await captureFixtures()
  const targets = []
  for (const [name, start] of scenario.servers()) targets.push([name, await start()])
  const rounds = scenario.rounds ?? settings.rounds
  const figures = Object.fromEntries(targets.map(([name]) => [name, []]))
  for (let round = 0; round < rounds; round++) {
    // Interleaved, and the order flips every round so no server always goes first.
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const [name, target] of order) {
      const result = await scenario.measure(target, name, round)
      figures[name][round] = result
      process.stderr.write(`  ${key} round ${round + 1}/${rounds} ${name}: ${JSON.stringify(result, (_, v) => typeof v === 'number' ? Number(v.toFixed(2)) : v)}\n`)
    }
  }
  // A baseline's own ratios to others (peerRatios): what the same work without our code reaches here, and the run's noise.
  const peers = Object.entries(scenario.peerRatios ?? {})
  const withPeers = (title, figure, invert) => [
    ...ratioRows(title, figures, figure, scenario.ratios, invert),
    ...peers.flatMap(([subject, ratios]) => ratioRows(title, figures, figure, ratios, invert, [subject]))
  ]
  const rows = withPeers(scenario.title, scenario.figure, false)
  if (figures.ours?.[0]?.cpuUsPerRequest !== undefined) {
    rows.push(...withPeers(`${scenario.title}: server CPU µs per request (ratio = theirs / ours)`, 'cpuUsPerRequest', true))
  }
  if (figures.ours?.[0]?.cpuUsPerMessage !== undefined) {
    rows.push(...withPeers(`${scenario.title}: server CPU µs per delivered message (ratio = theirs / ours)`, 'cpuUsPerMessage', true))
  }
  if (scenario.absolute !== undefined) {
    const [comparison, limit, figure = scenario.figure] = scenario.absolute
    for (const name of Object.keys(figures)) {
      const value = median(figures[name].map((r) => r[figure]))
      rows.push({ scenario: scenario.title, compared: `${name} ${figure === scenario.figure ? 'absolute' : figure}`, ours: fmt(value), theirs: '', ratio: '', range: '', target: name === 'ours' ? `${comparison} ${limit}` : '', met: name === 'ours' ? (value <= limit ? 'yes' : 'NO') : '' })
    }
  }
  if (scenario.extra !== undefined) rows.push(...ratioRows(scenario.extra.title, figures, scenario.extra.figure, scenario.extra.ratios))
  rows.push(...changeRows(scenario.title, figures))
  return { rows, figures }
}

// Interrupted (Ctrl-C, a timeout): stop the servers too, leave nothing running.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    stopAll().finally(() => {
      rmSync(scratch, { recursive: true, force: true })
      process.exit(130)
    })
  })
}

const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
const report = { startedAt: startedAt.toISOString(), settings, scenarios: {} }
const rows = []
try {
  for (const key of only) {
    process.stderr.write(`${key}…\n`)
    if (key === 'soak' || key === 'soak-redis') {
      const result = key === 'soak'
        ? await soak({ startOurs, settings, resultsDir, stamp })
        : await soak({ startOurs, settings, resultsDir, stamp: `${stamp}-redis`, redis: await redis() })
      rows.push(...result.rows)
      report.scenarios[key] = result
      continue
    }
    const result = await runScenario(key)
    rows.push(...result.rows)
    report.scenarios[key] = result.figures
  }
} finally {
  await stopAll()
  rmSync(scratch, { recursive: true, force: true })
}

const loadAfter = loadavg()
const header = [
  `Date: ${startedAt.toISOString()}; Node.js ${process.version}; ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
  hasTaskset ? `Pinned: servers on core ${SERVER_CORE}; wrk, the JS load generators and the fake Gemini on core ${LOAD_CORE}` : 'Not pinned (no taskset or one core)',
  `Load: wrk -t1 -c${settings.connections} unpipelined, ${settings.warmupSeconds} s warm-up, ${settings.seconds} s measured, ` +
    `${settings.rounds} interleaved round(s); ratio = median over rounds (range min–max). ` +
    'The CPU rows compare the server processes\' CPU time per request (/proc), which depends far less on a loaded machine than req/s',
  `Machine load average (1 min) before ${loadBefore[0].toFixed(2)}, after ${loadAfter[0].toFixed(2)}` +
    (Math.max(loadBefore[0], loadAfter[0]) > 1 ? ' — other work was running: absolute figures are not comparable, ratios are noisy' : '')
]
const table = [
  '| scenario | compared | ours | baseline | ratio | range | target | met |',
  '| --- | --- | ---: | ---: | ---: | --- | --- | --- |',
  ...rows.map((row) => `| ${row.scenario} | ${row.compared} | ${row.ours} | ${row.theirs} | ${row.ratio} | ${row.range} | ${row.target} | ${row.met} |`)
]
const text = [...header, '', ...table].join('\n')
console.log(text)
writeFileSync(join(resultsDir, `bench-${stamp}.md`), text + '\n')
writeFileSync(join(resultsDir, `bench-${stamp}.json`), JSON.stringify({ ...report, header, rows }, null, 2))
