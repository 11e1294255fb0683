// SPEC §11, WebSocket part: multiplayer fan-out. SESSIONS sessions of
// MEMBERS members each; one member per session sends chat messages, the
// others receive them. Two figures:
//  - throughput: every sender keeps WINDOW messages unacknowledged in
//    flight for DURATION_S; deliveries per second to receivers;
//  - latency: RATE messages per second in total at a steady pace; p50/p99
//    from send to receipt by each receiver.
// Run: `node bench/ws-fanout.mjs` (starts `src/server.ts` through tsx, pinned
// to core 0 with taskset when it exists; the clients run in this process).
// With INSTANCES=2 and REDIS_URL set, two instances share that Redis and the
// members of every session are split between them (sender on the first).
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocket } from 'ws'

const ROOT = new URL('..', import.meta.url).pathname
const SESSIONS = Number(process.env.SESSIONS ?? 50)
const MEMBERS = Number(process.env.MEMBERS ?? 4)
const WINDOW = Number(process.env.WINDOW ?? 4)
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10)
const RATE = Number(process.env.RATE ?? 2000)
const INSTANCES = Number(process.env.INSTANCES ?? 1)

const hasTaskset = (() => { try { execFileSync('taskset', ['-V']); return cpus().length > 1 } catch { return false } })()

function startServer (logDir) {
  const args = ['--import', 'tsx', join(ROOT, 'src/server.ts')]
  const [command, argv] = hasTaskset ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args]
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      LOG_DIR: logDir,
      WS_MESSAGE_RATE: '1000000000',
      WS_MAX_CONNECTIONS_PER_IP: '100000',
      ...(process.env.REDIS_URL === undefined ? {} : { REDIS_URL: process.env.REDIS_URL })
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const match = /"port":(\d+),"msg":"ready"/.exec(out)
      if (match) resolve({ child, url: `ws://127.0.0.1:${match[1]}/ws` })
    })
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)))
  })
}

/** A client whose every frame goes to `onFrame(envelope)`. */
async function client (url, onFrame) {
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  ws.on('message', (data) => onFrame(JSON.parse(data)))
  return ws
}

async function joinAll (urls) {
  const sessions = []
  let joined = 0
  let allJoined
  const everyoneIn = new Promise((resolve) => { allJoined = resolve })
  const onJoined = (envelope) => {
    if (envelope.event === 'session-joined' && ++joined === SESSIONS * MEMBERS) allJoined()
  }
  for (let s = 0; s < SESSIONS; s++) {
    const session = { id: `bench-${s}`, members: [], onFrame: onJoined }
    sessions.push(session)
    for (let m = 0; m < MEMBERS; m++) {
      const ws = await client(urls[m % urls.length], (envelope) => session.onFrame?.(envelope, m))
      ws.send(JSON.stringify({ event: 'join-session', data: { sessionId: session.id, playerName: `p${m}` } }))
      session.members.push(ws)
    }
  }
  await everyoneIn
  return sessions
}

async function throughput (sessions) {
  let delivered = 0
  let measuring = false
  for (const session of sessions) {
    const sender = session.members[0]
    let n = 0
    const send = () => sender.send(JSON.stringify({ event: 'chat message', data: { sessionId: session.id, text: `m${n}` }, id: String(n++) }))
    session.onFrame = (envelope, m) => {
      if (m === 0) { if (envelope.event === 'ack' && session.running) send() } else if (envelope.event === 'chat message' && measuring) delivered++
    }
    session.running = true
    for (let i = 0; i < WINDOW; i++) send()
  }
  await sleep(2000) // warm-up
  measuring = true
  const start = performance.now()
  await sleep(DURATION_S * 1000)
  measuring = false
  const seconds = (performance.now() - start) / 1000
  for (const session of sessions) session.running = false
  await sleep(500)
  return delivered / seconds
}

async function latency (sessions) {
  const samples = []
  for (const session of sessions) {
    session.onFrame = (envelope, m) => {
      if (m !== 0 && envelope.event === 'chat message') samples.push(performance.now() - Number(envelope.data.text))
    }
  }
  const intervalMs = 1000 / RATE
  const end = performance.now() + DURATION_S * 1000
  let next = performance.now()
  let i = 0
  while (performance.now() < end) {
    const session = sessions[i++ % sessions.length]
    session.members[0].send(JSON.stringify({ event: 'chat message', data: { sessionId: session.id, text: String(performance.now()) } }))
    next += intervalMs
    const wait = next - performance.now()
    if (wait > 1) await sleep(wait)
    else if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  await sleep(1000)
  samples.sort((a, b) => a - b)
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]
  return { received: samples.length, expected: i * (MEMBERS - 1), p50: at(0.5), p99: at(0.99) }
}

const logDir = mkdtempSync(join(tmpdir(), 'lc-bench-'))
const servers = []
try {
  for (let i = 0; i < INSTANCES; i++) servers.push(await startServer(join(logDir, String(i))))
  const sessions = await joinAll(servers.map((server) => server.url))
  const rate = await throughput(sessions)
  const lat = await latency(sessions)
  console.log(`Node.js ${process.version}; ${INSTANCES} instance(s)${process.env.REDIS_URL ? ' over Redis' : ''}; ${SESSIONS} sessions × ${MEMBERS} members; ` +
    (hasTaskset ? 'servers on core 0, clients on this process' : 'not pinned'))
  console.log(`throughput (window ${WINDOW} per sender, ${DURATION_S} s): ${rate.toFixed(0)} deliveries/s`)
  console.log(`latency at ${RATE} msg/s: p50 ${lat.p50.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms (${lat.received}/${lat.expected} received)`)
  for (const session of sessions) for (const ws of session.members) ws.terminate()
} finally {
  for (const server of servers) server.child.kill('SIGTERM')
  rmSync(logDir, { recursive: true, force: true })
}
