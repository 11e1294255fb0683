// SPEC §11 soak: N requests (a mix of /health, a live session, a missing
// session) plus M companion sessions created and left to expire, while the
// server's heap after a full GC and its RSS are sampled. Written next to each
// other under bench/results/: soak-<date>.md (figures and verdict) and
// soak-<date>.svg (the chart). With `redis` (bench/lib/redis.mjs) the server
// keeps its sessions there, and Redis' own memory must come back to where
// it started once the sessions expired.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { ROOT } from './lib/processes.mjs'
import { PERSONA } from './lib/servers.mjs'

const SESSION_TTL_MS = 5000
const SAMPLE_EVERY_MS = 2000
const SLICES = 20
const MB = 1024 * 1024

function askMemory (child) {
  return new Promise((resolve) => {
    child.once('message', resolve)
    child.send('gc')
  })
}

export async function soak ({ startOurs, settings, resultsDir, stamp, redis }) {
  const target = await startOurs({
    name: redis === undefined ? 'soak' : 'soak (Redis)',
    script: join(ROOT, 'bench/soak-server.mjs'),
    nodeArgs: ['--expose-gc'],
    ipc: true,
    env: { SESSION_TTL_MS: String(SESSION_TTL_MS), ...(redis === undefined ? {} : { REDIS_URL: redis.url }) }
  })
  const samples = []
  const started = performance.now()
  let requestsDone = 0
  let cyclesDone = 0
  const sample = async (phase) => {
    const memory = await askMemory(target.child)
    const entry = { seconds: (performance.now() - started) / 1000, phase, requests: requestsDone, cycles: cyclesDone, heapMB: memory.heapUsed / MB, rssMB: memory.rss / MB }
    samples.push(entry)
    process.stderr.write(`  soak ${entry.seconds.toFixed(0)} s ${phase}: ${entry.requests} requests, ${entry.cycles} cycles, heap ${entry.heapMB.toFixed(1)} MB, RSS ${entry.rssMB.toFixed(1)} MB\n`)
  }
  try {
    const liveSession = target.sessionId
    // Reading a session does not keep it alive; a chat turn every second does.
    const keepAlive = setInterval(() => {
      fetch(`${target.url}/api/ai-companion/chat`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sessionId: liveSession, message: 'still here' })
      }).then((response) => response.arrayBuffer(), () => undefined)
    }, 1000)
    const requests = [
      { method: 'GET', path: '/health' },
      { method: 'GET', path: `/api/sessions/${liveSession}` },
      { method: 'GET', path: '/api/sessions/no-such-session' }
    ]
    // autocannon's run is an event emitter (a response at a time, for the samples) and a promise.
    const counted = (options, onResponse) => {
      const tracker = autocannon(options)
      tracker.on('response', onResponse)
      return tracker
    }
    const run = (amount, cycles) => Promise.all([
      amount > 0 && counted({ url: target.url, connections: settings.connections, amount, requests }, () => { requestsDone++ }),
      cycles > 0 && counted({
        url: `${target.url}/api/ai-companion/initialize`,
        connections: 10,
        amount: cycles,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(PERSONA)
      }, () => { cyclesDone++ })
    ])

    await sample('start')
    // Warm-up: 5 % of the work, then every created session expired.
    await run(Math.round(settings.soakRequests * 0.05), Math.round(settings.soakCycles * 0.05))
    await sleep(SESSION_TTL_MS * 2 + 1000)
    await sample('warmed up')
    const warmed = samples.at(-1)
    // Like the heap, Redis is compared with its warmed-up self (its scripts
    // loaded, its tables grown once): the live session and the limit counters.
    const redisAtStart = redis === undefined ? undefined : { bytes: redis.usedMemory(), keys: redis.keyNames() }

    const sampler = setInterval(() => { sample('running').catch(() => undefined) }, SAMPLE_EVERY_MS)
    // In lockstep slices, so that the mix stays the same to the end. Run as
    // one piece each, the session cycles outlast the requests and then run
    // alone at about three times their rate, with three times the sessions
    // alive: the RSS of the last samples measured that peak, not the soak.
    const requestsLeft = Math.round(settings.soakRequests * 0.95)
    const cyclesLeft = Math.round(settings.soakCycles * 0.95)
    const slice = (total, i) => Math.floor(total * (i + 1) / SLICES) - Math.floor(total * i / SLICES)
    for (let i = 0; i < SLICES; i++) await run(slice(requestsLeft, i), slice(cyclesLeft, i))
    clearInterval(sampler)
    clearInterval(keepAlive)
    await sleep(SESSION_TTL_MS * 2 + 1000)
    await sample('end (sessions expired)')
    const end = samples.at(-1)

    const running = samples.filter((s) => s.phase === 'running')
    const half = running.slice(Math.floor(running.length / 2))
    const heapRatio = end.heapMB / warmed.heapMB
    const rssMidMB = half[0]?.rssMB ?? warmed.rssMB
    const rssEndMB = Math.max(end.rssMB, ...half.map((s) => s.rssMB))
    const rssGrowth = rssEndMB / rssMidMB
    // The one live session (and the instance's presence) stays; everything else expired.
    const redisAtEnd = redis === undefined ? undefined : { bytes: redis.usedMemory(), keys: redis.keyNames() }
    const redisRatio = redis === undefined ? undefined : redisAtEnd.bytes / redisAtStart.bytes
    const chart = join(resultsDir, `soak-${stamp}.svg`)
    writeFileSync(chart, svgChart(samples, warmed.heapMB))
    const lines = [
      `# Soak ${stamp}`,
      '',
      `${requestsDone} requests (/health, a live session, a missing session; -c${settings.connections}) and ${cyclesDone} companion sessions created and expired (TTL ${SESSION_TTL_MS} ms), in ${((performance.now() - started) / 1000).toFixed(0)} s.`,
      '',
      `- heap after GC: warmed up ${warmed.heapMB.toFixed(1)} MB, end ${end.heapMB.toFixed(1)} MB (${heapRatio.toFixed(3)}×; target ≤ 1.10×) ${heapRatio <= 1.1 ? 'met' : 'NOT MET'}`,
      `- RSS: warmed up ${warmed.rssMB.toFixed(1)} MB, halfway ${rssMidMB.toFixed(1)} MB, highest in the second half or at the end ${rssEndMB.toFixed(1)} MB (${rssGrowth.toFixed(3)}×; flat = ≤ 1.10×) ${rssGrowth <= 1.1 ? 'met' : 'NOT MET'}`,
      ...(redis === undefined
        ? []
        : [`- Redis used_memory: warmed up ${(redisAtStart.bytes / MB).toFixed(2)} MB (keys: ${redisAtStart.keys.join(', ')}), after the sessions expired ${(redisAtEnd.bytes / MB).toFixed(2)} MB (keys: ${redisAtEnd.keys.join(', ')}) (${redisRatio.toFixed(3)}×; back = ≤ 1.10×) ${redisRatio <= 1.1 ? 'met' : 'NOT MET'}`]),
      '',
      `Chart: soak-${stamp}.svg`,
      '',
      '| s | phase | requests | cycles | heap MB | RSS MB |',
      '| ---: | --- | ---: | ---: | ---: | ---: |',
      ...samples.map((s) => `| ${s.seconds.toFixed(0)} | ${s.phase} | ${s.requests} | ${s.cycles} | ${s.heapMB.toFixed(1)} | ${s.rssMB.toFixed(1)} |`)
    ]
    writeFileSync(join(resultsDir, `soak-${stamp}.md`), lines.join('\n') + '\n')
    const title = `soak${redis === undefined ? '' : ' with Redis'}: ${requestsDone} requests + ${cyclesDone} session cycles`
    return {
      samples,
      rows: [
        { scenario: title, compared: 'heap after GC: end / warmed up', ours: end.heapMB.toFixed(1), theirs: warmed.heapMB.toFixed(1), ratio: heapRatio.toFixed(3), range: '', target: '≤ 1.1', met: heapRatio <= 1.1 ? 'yes' : 'NO' },
        { scenario: title, compared: 'RSS: end / halfway', ours: rssEndMB.toFixed(1), theirs: rssMidMB.toFixed(1), ratio: rssGrowth.toFixed(3), range: '', target: '≤ 1.1', met: rssGrowth <= 1.1 ? 'yes' : 'NO' },
        ...(redis === undefined
          ? []
          : [{ scenario: title, compared: 'Redis used_memory MB: end / warmed up', ours: (redisAtEnd.bytes / MB).toFixed(2), theirs: (redisAtStart.bytes / MB).toFixed(2), ratio: redisRatio.toFixed(3), range: '', target: '≤ 1.1', met: redisRatio <= 1.1 ? 'yes' : 'NO' }])
      ]
    }
  } finally {
    await target.stop()
  }
}

/** A small line chart: heap after GC and RSS over time, with the ±10 % band around the warmed-up heap. */
function svgChart (samples, warmedHeapMB) {
  const width = 800
  const height = 400
  const pad = 50
  const maxX = Math.max(...samples.map((s) => s.seconds), 1)
  const maxY = Math.max(...samples.map((s) => s.rssMB), warmedHeapMB * 1.1) * 1.1
  const x = (seconds) => pad + (seconds / maxX) * (width - 2 * pad)
  const y = (mb) => height - pad - (mb / maxY) * (height - 2 * pad)
  const line = (key, color) => `<polyline fill="none" stroke="${color}" stroke-width="2" points="${samples.map((s) => `${x(s.seconds).toFixed(1)},${y(s[key]).toFixed(1)}`).join(' ')}"/>`
  const ticks = Array.from({ length: 6 }, (_, i) => (maxY / 5) * i)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<rect x="${pad}" y="${y(warmedHeapMB * 1.1).toFixed(1)}" width="${width - 2 * pad}" height="${(y(warmedHeapMB * 0.9) - y(warmedHeapMB * 1.1)).toFixed(1)}" fill="#cde" opacity="0.6"/>
${ticks.map((mb) => `<line x1="${pad}" x2="${width - pad}" y1="${y(mb).toFixed(1)}" y2="${y(mb).toFixed(1)}" stroke="#eee"/><text x="${pad - 5}" y="${(y(mb) + 4).toFixed(1)}" text-anchor="end">${mb.toFixed(0)}</text>`).join('\n')}
<line x1="${pad}" x2="${width - pad}" y1="${height - pad}" y2="${height - pad}" stroke="black"/>
<line x1="${pad}" x2="${pad}" y1="${pad}" y2="${height - pad}" stroke="black"/>
${line('heapMB', '#1565c0')}
${line('rssMB', '#c62828')}
<text x="${width / 2}" y="${height - 15}" text-anchor="middle">seconds</text>
<text x="15" y="${height / 2}" transform="rotate(-90 15 ${height / 2})" text-anchor="middle">MB</text>
<text x="${pad + 10}" y="20" fill="#1565c0">heap used after GC</text>
<text x="${pad + 170}" y="20" fill="#c62828">RSS</text>
<text x="${pad + 220}" y="20" fill="#5a7">band: warmed-up heap ±10 %</text>
</svg>
`
}
