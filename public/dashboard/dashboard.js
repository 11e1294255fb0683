/* global ResizeObserver */

/*
 * The monitoring page (SPEC §8.1). Loads the last hour from
 * /api/stats/history once, then every 2 s reads /api/stats (figures) and
 * /health (status, version) and adds a point to every chart. With
 * STATS_TOKEN set it asks for the token once and keeps it in this tab's
 * sessionStorage.
 */

const REFRESH_MS = 2000
const HOUR_S = 3600
const TOKEN_KEY = 'loverscode.statsToken'

const COLORS = {
  ok: '#1a7f37',
  client: '#bf8700',
  server: '#cf222e',
  p50: '#0969da',
  p95: '#8250df',
  p99: '#cf222e',
  ai: '#0969da',
  fallback: '#bf8700',
  aiP95: '#8250df',
  connections: '#0969da',
  sessions: '#1a7f37',
  rss: '#8250df',
  heap: '#1a7f37',
  loop: '#bc4c00'
}

/*
 * Every chart: its element, its series (label, colour, the point's field)
 * and, when two units share it, which series go on a second axis at the right.
 */
const CHARTS = [
  {
    id: 'chart-requests',
    series: [
      ['2xx/3xx', COLORS.ok, 'okPerS'],
      ['4xx', COLORS.client, 'clientPerS'],
      ['5xx', COLORS.server, 'serverPerS']
    ]
  },
  {
    id: 'chart-latency',
    series: [
      ['p50', COLORS.p50, 'p50Ms'],
      ['p95', COLORS.p95, 'p95Ms'],
      ['p99', COLORS.p99, 'p99Ms']
    ]
  },
  {
    id: 'chart-ai',
    series: [
      ['requests', COLORS.ai, 'aiPerMin'],
      ['failures', COLORS.server, 'aiFailuresPerMin'],
      ['fallbacks', COLORS.fallback, 'aiFallbacksPerMin'],
      ['p95 ms', COLORS.aiP95, 'aiP95Ms', 'ms']
    ]
  },
  {
    id: 'chart-load',
    series: [
      ['connections', COLORS.connections, 'connections'],
      ['sessions', COLORS.sessions, 'sessions']
    ]
  },
  {
    id: 'chart-memory',
    series: [
      ['RSS', COLORS.rss, 'rssMB'],
      ['heap used', COLORS.heap, 'heapUsedMB']
    ]
  },
  {
    id: 'chart-event-loop',
    series: [
      ['delay', COLORS.loop, 'eventLoopDelayMs']
    ]
  }
]

// uPlot's IIFE build, loaded by the page just before this module.
const { uPlot: Plot } = window

const $ = (id) => document.getElementById(id)

class Unauthorized extends Error {}
class RateLimited extends Error {
  constructor (retryAfterS) {
    super(`rate limited for ${retryAfterS} s`)
    this.retryAfterS = retryAfterS
  }
}

let token = sessionStorage.getItem(TOKEN_KEY)
/** Chart points, oldest first: history samples with t in seconds and rates (okPerS, aiPerMin…). */
let points = []
let charts = []
let previous
let timer

async function getJson (path, { authorized = true, okStatuses = [] } = {}) {
  const headers = authorized && token !== null ? { authorization: `Bearer ${token}` } : {}
  const response = await fetch(path, { headers, cache: 'no-store' })
  if (response.status === 401) throw new Unauthorized()
  if (response.status === 429) throw new RateLimited(Number(response.headers.get('retry-after')) || 60)
  if (!response.ok && !okStatuses.includes(response.status)) throw new Error(`${path} answered ${response.status}`)
  return response.json()
}

/** A history sample (counts over intervalMs) as a chart point: counts become rates, the rest stays. */
function pointFromSample (sample, intervalMs) {
  const perS = 1000 / intervalMs
  const perMin = 60_000 / intervalMs
  return {
    ...sample,
    t: sample.t / 1000,
    okPerS: sample.successful * perS,
    clientPerS: sample.clientErrors * perS,
    serverPerS: sample.serverErrors * perS,
    aiPerMin: sample.aiRequests * perMin,
    aiFailuresPerMin: sample.aiFailures * perMin,
    aiFallbacksPerMin: sample.aiFallbacks * perMin
  }
}

/**
 * Two /api/stats reads as one history sample: the counts between them, and
 * percentiles only when requests came in meanwhile (otherwise /api/stats
 * repeats old figures; the chart shows a gap, as the history does).
 */
function sampleFromStats (stats, before, t) {
  const since = (read) => Math.max(read(stats) - read(before.stats), 0)
  const requests = since((read) => read.requests.total)
  const answers = since((read) => read.ai.successful + read.ai.blocked)
  const { performance } = stats
  return {
    t,
    successful: since((read) => read.requests.successful),
    clientErrors: since((read) => read.requests.clientErrors),
    serverErrors: since((read) => read.requests.serverErrors),
    p50Ms: requests === 0 ? null : performance.p50Ms,
    p95Ms: requests === 0 ? null : performance.p95Ms,
    p99Ms: requests === 0 ? null : performance.p99Ms,
    aiRequests: since((read) => read.ai.total),
    aiFailures: since((read) => read.ai.failures),
    aiFallbacks: since((read) => read.ai.fallbacks),
    aiP95Ms: answers === 0 ? null : stats.ai.p95LatencyMs,
    connections: stats.connections.current,
    sessions: stats.sessions.active,
    rssMB: performance.memory.rssMB,
    heapUsedMB: performance.memory.heapUsedMB,
    eventLoopDelayMs: performance.eventLoopDelayMs
  }
}

const fromZero = (_plot, _min, max) => [0, Math.max((max ?? 0) * 1.1, 1)]

/** A dot where a value stands alone between gaps (a line needs two points: a quiet minute's one request). */
function lonePoints (plot, seriesIndex) {
  const values = plot.data[seriesIndex]
  const lone = []
  for (let i = 0; i < values.length; i++) {
    if (values[i] != null && values[i - 1] == null && values[i + 1] == null) lone.push(i)
  }
  return lone
}

function chartOptions (chart, width) {
  const hasRightAxis = chart.series.some((series) => series[3] !== undefined)
  const axes = [{}, { scale: 'y', size: 48 }]
  if (hasRightAxis) axes.push({ scale: 'ms', side: 1, size: 48, grid: { show: false } })
  return {
    width,
    height: 180,
    cursor: { drag: { x: false, y: false } },
    // Counts and times start at zero, so a flat line does not look like a swing.
    scales: { x: { time: true }, y: { range: fromZero }, ms: { range: fromZero } },
    axes,
    series: [
      {},
      ...chart.series.map(([label, stroke, , scale]) => ({
        label, stroke, width: 2, scale: scale ?? 'y', spanGaps: false, points: { show: true, filter: lonePoints }
      }))
    ]
  }
}

function chartData (chart) {
  return [points.map((point) => point.t), ...chart.series.map(([, , field]) => points.map((point) => point[field]))]
}

function drawCharts () {
  charts = CHARTS.map((chart) => {
    const figure = $(chart.id)
    const plot = new Plot(chartOptions(chart, figure.clientWidth), chartData(chart), figure)
    new ResizeObserver(() => plot.setSize({ width: figure.clientWidth, height: 180 })).observe(figure)
    return { chart, plot }
  })
}

function updateCharts () {
  const oldest = (points.at(-1)?.t ?? 0) - HOUR_S
  while (points.length > 0 && points[0].t < oldest) points.shift()
  for (const { chart, plot } of charts) plot.setData(chartData(chart))
}

const formatUptime = ({ days, hours, minutes, seconds }) =>
  days > 0
    ? `${days} d ${hours % 24} h`
    : hours > 0 ? `${hours} h ${minutes % 60} min` : minutes > 0 ? `${minutes} min ${seconds % 60} s` : `${seconds} s`

function showFacts (stats, health) {
  const healthFact = $('fact-health')
  healthFact.textContent = health.status
  healthFact.dataset.status = health.status
  $('fact-uptime').textContent = formatUptime(stats.uptime)
  $('fact-version').textContent = health.version
  const instanceId = stats.instanceId ?? health.instanceId
  $('fact-instance-row').hidden = instanceId === undefined
  $('fact-instance').textContent = instanceId ?? ''
  $('fact-provider').textContent = stats.ai.provider
  $('fact-model').textContent = stats.ai.model
  const circuit = $('fact-circuit')
  circuit.textContent = stats.ai.circuit
  circuit.dataset.circuit = stats.ai.circuit
  $('fact-requests').textContent = String(stats.requests.total)
  $('fact-error-rate').textContent = `${stats.requests.errorRate} %`
  $('fact-ai-failure-rate').textContent = `${stats.ai.failureRate} %`
  $('fact-connections').textContent = String(stats.connections.current)
  $('fact-sessions').textContent = String(stats.sessions.active)

  const list = $('alert-list')
  list.replaceChildren(...stats.alerts.map((alert) => {
    const item = document.createElement('li')
    item.className = `alert ${alert.level}`
    const name = document.createElement('strong')
    name.textContent = alert.name
    item.append(name, ` ${alert.level}: ${alert.value} (threshold ${alert.threshold}) since ${new Date(alert.since).toLocaleTimeString()}`)
    return item
  }))
  $('no-alerts').hidden = stats.alerts.length > 0
}

function setStatus (text, problem = false) {
  const status = $('status')
  status.textContent = text
  status.classList.toggle('problem', problem)
}

function askForToken (error) {
  clearTimeout(timer)
  $('board').hidden = true
  $('token-form').hidden = false
  const message = $('token-error')
  message.hidden = error === undefined
  message.textContent = error ?? ''
  setStatus('Stats token needed')
  $('token').focus()
}

/** A failed read: ask for the token again, or `retry` after a rate limit's wait or the next tick. */
function handleFailure (error, retry) {
  if (error instanceof Unauthorized) {
    const rejected = token !== null
    token = null
    sessionStorage.removeItem(TOKEN_KEY)
    askForToken(rejected ? 'That token was not accepted (401). Check the server\'s STATS_TOKEN and try again.' : undefined)
    return
  }
  if (error instanceof RateLimited) {
    setStatus(`Rate limited by the server: next try in ${error.retryAfterS} s`, true)
    timer = setTimeout(retry, error.retryAfterS * 1000)
    return
  }
  setStatus(`Cannot read the figures (${error.message}); retrying every ${REFRESH_MS / 1000} s`, true)
  timer = setTimeout(retry, REFRESH_MS)
}

async function refresh () {
  try {
    // /health answers 503 with the same body when the instance is unhealthy.
    const [stats, health] = await Promise.all([getJson('/api/stats'), getJson('/health', { authorized: false, okStatuses: [503] })])
    // The server's clock for both history and live points, so they line up.
    const t = Date.parse(health.timestamp)
    if (previous !== undefined) {
      points.push(pointFromSample(sampleFromStats(stats, previous, t), Math.max(t - previous.t, 1)))
      updateCharts()
    }
    previous = { stats, t }
    showFacts(stats, health)
    setStatus(`Updated ${new Date().toLocaleTimeString()}`)
    timer = setTimeout(refresh, REFRESH_MS)
  } catch (error) {
    handleFailure(error, refresh)
  }
}

async function open () {
  setStatus('Loading…')
  try {
    const history = await getJson('/api/stats/history')
    if (token !== null) sessionStorage.setItem(TOKEN_KEY, token)
    $('token-form').hidden = true
    $('board').hidden = false
    points = history.samples.map((sample) => pointFromSample(sample, history.intervalMs))
    previous = undefined
    if (charts.length === 0) drawCharts()
    else updateCharts()
  } catch (error) {
    handleFailure(error, open)
    return
  }
  await refresh()
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault()
  token = $('token').value.trim()
  $('token').value = ''
  open()
})

open()
