// The servers a benchmark compares, started once each and kept for the
// other scenarios: ours (dist/server.js as production runs it), the fake
// Gemini, and the baselines under bench/baselines/, which answer with
// fixtures captured from our server so that every server does the same work.
import { mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LOAD_CORE, ROOT, startNode } from './processes.mjs'
import { startRedis } from './redis.mjs'

export const PERSONA = { companionConfig: { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'girlfriend' } }

/**
 * The Node options `npm start` gives a build (the start script of the
 * package.json beside its dist/), so that it is measured as it runs.
 */
function startOptions (dist) {
  const { scripts } = JSON.parse(readFileSync(join(dist, '..', 'package.json'), 'utf8'))
  return scripts.start.split(/\s+/).filter((word) => word.startsWith('--'))
}

/** A companion session on our server (its greeting comes from the fake Gemini). */
export async function createSession (url) {
  const response = await fetch(`${url}/api/ai-companion/initialize`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(PERSONA)
  })
  const { sessionId } = await response.json()
  if (typeof sessionId !== 'string') throw new Error(`no session from ${url}: ${response.status}`)
  return sessionId
}

/**
 * A companion session answers one chat turn at a time (409 SESSION_BUSY), so
 * the chat load turns over CHAT_SESSIONS sessions of ours; the baselines
 * ignore the session.
 */
const CHAT_SESSIONS = 200
const CHAT_MESSAGE = 'How was your day?'
export async function chatRequest (target) {
  target.chatSessionIds ??= target.ours === true
    ? await Promise.all(Array.from({ length: CHAT_SESSIONS }, () => createSession(target.url)))
    : [target.sessionId]
  return { method: 'POST', bodies: target.chatSessionIds.map((sessionId) => ({ sessionId, message: CHAT_MESSAGE })) }
}

export function createServers (scratch) {
  const baseline = (file) => join(ROOT, 'bench/baselines', file)
  const running = new Map()

  /** Starts a server once (by key) and keeps it for the other scenarios. */
  async function server (key, start) {
    if (!running.has(key)) running.set(key, await start())
    return running.get(key)
  }

  const fakeGemini = (latencyMs) => server(`fake-${latencyMs}`, () =>
    startNode(baseline('fake-gemini.mjs'), { env: { BENCH_LATENCY_MS: String(latencyMs) }, core: LOAD_CORE, name: 'fake Gemini' }))

  /** Our server as production runs it, limits raised so the run measures their cost, not their refusals. */
  async function startOurs ({ dist = join(ROOT, 'dist'), latencyMs = 0, name = 'ours', script = join(dist, 'server.js'), nodeArgs = [], ipc = false, env = {} } = {}) {
    const fake = await fakeGemini(latencyMs)
    const target = await startNode(script, {
      name,
      nodeArgs: [...startOptions(dist), ...nodeArgs],
      ipc,
      env: {
        PORT: '0',
        HOST: '127.0.0.1',
        NODE_ENV: 'production',
        LOG_LEVEL: 'info',
        LOG_DIR: mkdtempSync(join(scratch, 'logs-')),
        GEMINI_API_KEY: 'bench-key',
        GEMINI_BASE_URL: fake.url,
        RATE_LIMIT_MAX: '1000000000',
        SLOW_DOWN_AFTER: '999999999', // below RATE_LIMIT_MAX: the slow-down check stays on
        AI_RATE_LIMIT_MAX: '1000000000',
        AI_MAX_CONCURRENCY: '1000',
        WS_MAX_CONNECTIONS: '1000000',
        WS_MAX_CONNECTIONS_PER_IP: '1000000',
        WS_MESSAGE_RATE: '1000000000',
        WS_FRAME_RATE: '1000000000',
        WS_BYTE_RATE: '1000000000',
        HIGH_CONNECTIONS: '1000000',
        SESSION_CREATE_RATE: '1000000000',
        WS_UPGRADE_RATE: '1000000000',
        HTTP_MAX_CONNECTIONS_PER_IP: '1000000', // the idle-connection scenario opens 20,000 from one address
        ...env
      }
    })
    // Sessions live in each instance's memory: every instance gets its own.
    target.sessionId = await createSession(target.url)
    target.ours = true
    return target
  }

  const ours = (dist, latencyMs = 0, name = 'ours') => server(`${name}-${latencyMs}`, () => startOurs({ dist, latencyMs, name }))

  const redis = () => server('redis', startRedis)

  /**
   * Two instances on one Redis (SPEC §9) as one target: `urls` holds both,
   * the CPU time is theirs together. `start(name, env)` starts one.
   */
  const onRedis = (key, title, start) => server(key, async () => {
    const { url: REDIS_URL } = await redis()
    const instances = [await start(`${title} A`, { REDIS_URL }), await start(`${title} B`, { REDIS_URL })]
    return {
      name: title,
      urls: instances.map((instance) => instance.url),
      cpuSeconds: () => instances.reduce((sum, instance) => sum + instance.cpuSeconds(), 0),
      stop: async () => { for (const instance of instances) await instance.stop() }
    }
  })
  /** `prefix`: REDIS_PREFIX, so that two builds compared on one Redis keep apart (their own stream, sessions). */
  const oursOnRedis = (dist, title = 'ours on Redis', prefix = 'lc:') =>
    onRedis(title, title, (name, env) => startOurs({ dist, name, env: { ...env, REDIS_PREFIX: prefix } }))
  /** The same-work floor of the two-instance fan-out: bare `ws` instances recording and reading through Redis. */
  const bareWsOnRedis = () => onRedis('bare-ws-on-redis', 'bare ws on Redis', (name, env) => startNode(baseline('bare-ws-redis.mjs'), { name, env }))

  /**
   * The upstream request of a chat turn of ours once the conversation fills
   * the context (AI_HISTORY_MESSAGES, 20 by default), as the fake Gemini got it.
   */
  async function captureChatRequest (url) {
    const sessionId = await createSession(url)
    for (let turn = 0; turn < 12; turn++) {
      const response = await fetch(`${url}/api/ai-companion/chat`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sessionId, message: CHAT_MESSAGE })
      })
      if (response.status !== 200) throw new Error(`chat turn of ours: ${response.status}`)
    }
    const fake = await fakeGemini(0)
    return (await fetch(`${fake.url}/last-request`)).text()
  }

  /** What the baselines must answer the same way: captured from our server. */
  let fixtures
  async function captureFixtures () {
    if (fixtures !== undefined) return fixtures
    const { url, sessionId } = await ours()
    const session = await fetch(`${url}/api/sessions/${sessionId}`)
    const notFound = await fetch(`${url}/api/sessions/no-such-session`)
    const headers = Object.fromEntries([...session.headers].filter(([name]) =>
      !['date', 'content-length', 'content-type', 'connection', 'keep-alive'].includes(name)))
    fixtures = {
      sessionId,
      chatRequest: await captureChatRequest(url),
      env: {
        BENCH_SESSION_ID: sessionId,
        BENCH_SESSION: await session.text(),
        BENCH_NOT_FOUND: await notFound.text(),
        BENCH_HEADERS: JSON.stringify(headers)
      }
    }
    return fixtures
  }

  /** Name → its program, and the environment only it gets. */
  const BASELINES = {
    bare: { file: 'bare-fastify.mjs' },
    // Bare Fastify + SDK sending our upstream request (persona, policy, the last 20 turns), not the message alone.
    'bare-same-request': { file: 'bare-fastify.mjs', env: () => ({ BENCH_CHAT_SAME_REQUEST: fixtures.chatRequest }) },
    // The same, with the SDK given our fetch (undici's request) instead of Node's: what our stack adds over the same upstream call.
    'bare-same-fetch': { file: 'bare-fastify.mjs', env: () => ({ BENCH_CHAT_SAME_REQUEST: fixtures.chatRequest, BENCH_OUR_FETCH: '1' }) },
    floor: { file: 'same-work-floor.mjs' },
    // The floor again, in a process of its own: two identical servers measured in the same run show that run's noise.
    'floor-again': { file: 'same-work-floor.mjs' },
    'floor-required': { file: 'floor-required.mjs' },
    'fastify-defaults': { file: 'fastify-defaults.mjs' },
    express: { file: 'express-stack.mjs' },
    'bare-ws': { file: 'bare-ws.mjs' }
  }

  /** `nodeArgs`: for a profile (bench/profile.mjs). */
  const baselineServer = (name, latencyMs = 0, nodeArgs = []) => server(`${name}-${latencyMs}`, async () => {
    if (!Object.hasOwn(BASELINES, name)) throw new Error(`unknown baseline ${name}; one of ${Object.keys(BASELINES).join(', ')}`)
    const { env } = await captureFixtures()
    const fake = await fakeGemini(latencyMs)
    const { file, env: ownEnv = () => ({}) } = BASELINES[name]
    const target = await startNode(baseline(file), {
      name,
      nodeArgs,
      env: { ...env, ...ownEnv(), GEMINI_BASE_URL: fake.url, BENCH_LOG_FILE: join(mkdtempSync(join(scratch, `${name}-`)), 'requests.log') }
    })
    target.sessionId = fixtures.sessionId
    return target
  })

  async function stopAll () {
    // Redis last: the instances close their connections to it first.
    const targets = [...running].sort(([key]) => key === 'redis' ? 1 : -1).map(([, target]) => target)
    for (const target of targets) await target.stop()
    running.clear()
  }

  return { startOurs, ours, oursOnRedis, bareWsOnRedis, redis, baselineServer, captureFixtures, stopAll }
}
