// SPEC §11, HTTP part: GET /health and GET /api/sessions/:id through the full
// plugin stack against a bare Fastify baseline, in one run on this machine.
// Run with `npm run bench` (builds first). Server and load generator are
// pinned to different cores with taskset when it exists.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'

const ROOT = new URL('..', import.meta.url).pathname
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10)
const WARMUP_S = 3
const CONNECTIONS = 50

const hasTaskset = (() => { try { execFileSync('taskset', ['-V']); return cpus().length > 1 } catch { return false } })()
const pinned = (core, command, args) => hasTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]

function start (script, env) {
  const [command, args] = pinned(0, process.execPath, [script])
  const child = spawn(command, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const match = /"port":(\d+),"msg":"ready"/.exec(out)
      if (match) resolve({ child, url: `http://127.0.0.1:${match[1]}` })
    })
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}`)))
  })
}

async function measure (url) {
  await autocannon({ url, connections: CONNECTIONS, duration: WARMUP_S })
  const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_S })
  return { rps: result.requests.average, p99: result.latency.p99, errors: result.errors + result.non2xx }
}

const logDir = mkdtempSync(join(tmpdir(), 'lc-bench-'))
const ours = await start(join(ROOT, 'dist/server.js'), {
  PORT: '0',
  HOST: '127.0.0.1',
  NODE_ENV: 'production',
  LOG_LEVEL: 'info', // the "ready" line carries the port; nothing is logged per request
  LOG_DIR: logDir,
  // Limits raised so the benchmark measures their cost, not their refusals.
  RATE_LIMIT_MAX: '1000000000',
  AI_RATE_LIMIT_MAX: '1000000000',
  SLOW_DOWN_AFTER: '1000000000'
})
const created = await fetch(`${ours.url}/api/ai-companion/initialize`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ companionConfig: { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'girlfriend' } })
}).then((response) => response.json())
const sessionPath = `/api/sessions/${created.sessionId}`
const sessionBody = await fetch(ours.url + sessionPath).then((response) => response.text())
const bare = await start(join(ROOT, 'bench/baselines/bare-fastify.mjs'), { BENCH_SESSION: sessionBody })

const rows = []
try {
  for (const [name, path, target] of [['GET /health', '/health', 0.8], ['GET /api/sessions/:id', sessionPath, 0.6]]) {
    const baseline = await measure(bare.url + path)
    const full = await measure(ours.url + path)
    rows.push({ name, ours: full, bare: baseline, ratio: full.rps / baseline.rps, target })
  }
} finally {
  ours.child.kill('SIGTERM')
  bare.child.kill('SIGTERM')
  rmSync(logDir, { recursive: true, force: true })
}

console.log(`Node.js ${process.version}; autocannon -c ${CONNECTIONS} (unpipelined), ${WARMUP_S} s warm-up, ${DURATION_S} s measured; ` +
  (hasTaskset ? 'server on core 0, load generator on core 1' : 'not pinned (no taskset)'))
for (const row of rows) {
  console.log(`${row.name.padEnd(24)} ours ${row.ours.rps.toFixed(0).padStart(7)} req/s (p99 ${row.ours.p99} ms, errors ${row.ours.errors})  ` +
    `bare ${row.bare.rps.toFixed(0).padStart(7)} req/s  ratio ${row.ratio.toFixed(2)} (target ≥ ${row.target})`)
}
