// Quick before/after of one route while working on a hot path: our build and
// another build (default: bench/results/before/dist, see README) side by side,
// interleaved, server CPU µs per request. Not a §11 figure; `npm run bench` is.
//
//   node bench/ab.mjs [--path session|session-404|health] [--before DIR] [--before-env NAME=VALUE…] [--rounds 3] [--seconds 5]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { wrk } from './lib/http-load.mjs'
import { pinSelf, ROOT } from './lib/processes.mjs'
import { createServers } from './lib/servers.mjs'

const { values: options } = parseArgs({
  options: {
    path: { type: 'string', default: 'session' },
    before: { type: 'string', default: join(ROOT, 'bench/results/before/dist') },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    'before-env': { type: 'string', multiple: true, default: [] }
  }
})
pinSelf()
const scratch = mkdtempSync(join(tmpdir(), 'lc-ab-'))
const { ours, startOurs, baselineServer, captureFixtures, stopAll } = createServers(scratch)
let before
try {
  await captureFixtures()
  before = await startOurs({ dist: resolve(options.before), name: 'before', env: Object.fromEntries(options['before-env'].map((pair) => pair.split('='))) })
  const targets = [['after', await ours()], ['before', before], ['floor', await baselineServer('floor')]]
  const pathOf = (target) => ({ session: `/api/sessions/${target.sessionId}`, 'session-404': '/api/sessions/nope', health: '/health' })[options.path]
  const results = Object.fromEntries(targets.map(([name]) => [name, []]))
  for (let round = 0; round < Number(options.rounds); round++) {
    for (const [name, target] of round % 2 === 0 ? targets : [...targets].reverse()) {
      const result = await wrk(target.url + pathOf(target), { connections: 50, seconds: Number(options.seconds), warmupSeconds: 1, cpuSeconds: target.cpuSeconds })
      results[name].push(result.cpuUsPerRequest)
    }
  }
  for (const [name, values] of Object.entries(results)) {
    console.log(`${name.padEnd(7)} µs/request: ${values.map((v) => v.toFixed(1)).join(', ')}`)
  }
} finally {
  await before?.stop() // started outside createServers' cache, so stopAll does not know it
  await stopAll()
  rmSync(scratch, { recursive: true, force: true })
}
