// WebSocket load from this process (pinned to the load core): idle
// connections for the memory figure, and 2-person sessions where one member
// sends `chat message` frames and the other receives them, for fan-out
// throughput (saturated: a bounded window of frames in flight per pair) and
// delivery latency at a fixed total rate. The send time travels in the text.
// With `cpuSeconds`, also the server's CPU time per delivered message.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { percentile } from './stats.mjs'

const CONNECT_BATCH = 200
const WINDOW = 16

/** The WebSocket endpoint of a server at `httpUrl`. */
export const wsEndpoint = (httpUrl) => `${httpUrl.replace(/^http/, 'ws')}/ws`

function connect (url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false })
    socket.once('open', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Opens `count` connections (CONNECT_BATCH at a time); returns them. */
export async function openIdle (url, count) {
  const sockets = []
  for (let opened = 0; opened < count; opened += CONNECT_BATCH) {
    const batch = Math.min(CONNECT_BATCH, count - opened)
    sockets.push(...await Promise.all(Array.from({ length: batch }, () => connect(url))))
  }
  return sockets
}

export async function closeAll (sockets) {
  await Promise.all(sockets.map((socket) => new Promise((resolve) => {
    if (socket.readyState === WebSocket.CLOSED) return resolve()
    socket.once('close', resolve)
    socket.terminate()
  })))
}

const send = (socket, event, data) => socket.send(JSON.stringify({ event, data }))

function waitFor (socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within 10 s`)), 10_000)
    const onMessage = (raw) => {
      const message = JSON.parse(raw)
      if (message.event !== event) return
      clearTimeout(timer)
      socket.off('message', onMessage)
      resolve(message)
    }
    socket.on('message', onMessage)
  })
}

/** `pairs` sessions of two members each, both joined; each receiver on `receiverUrl`. */
async function openPairs (url, receiverUrl, pairs, tag) {
  const result = []
  for (let i = 0; i < pairs; i++) {
    const sessionId = `bench-${tag}-${i}`
    const [sender, receiver] = await Promise.all([connect(url), connect(receiverUrl)])
    for (const [socket, playerName] of [[sender, 'Alex'], [receiver, 'Sam']]) {
      const joined = waitFor(socket, 'session-joined')
      send(socket, 'join-session', { sessionId, playerName })
      await joined
    }
    result.push({ sessionId, sender, receiver, inFlight: 0 })
  }
  return result
}

/**
 * Fan-out in `pairs` 2-person sessions for `seconds` after `warmupSeconds`.
 * `rate` undefined: saturated (each sender keeps WINDOW frames in flight);
 * otherwise `rate` frames per second in total, on a schedule. With
 * `receiverUrl` (another instance on the same Redis), every session's
 * receiver is there, so every message crosses instances.
 */
export async function fanOut (url, { pairs, seconds, warmupSeconds, rate, tag, cpuSeconds, receiverUrl = url }) {
  const sessions = await openPairs(url, receiverUrl, pairs, tag)
  let measuring = false
  let delivered = 0
  const latencies = []
  const sendOne = (pair) => {
    pair.inFlight++
    send(pair.sender, 'chat message', { sessionId: pair.sessionId, text: String(performance.now()) })
  }
  // A refused message never arrives, and its pair would stall with a full
  // window: the run would measure the limits, not the fan-out. So any
  // refusal ends the run with its reason.
  let refusal
  for (const pair of sessions) {
    pair.sender.on('message', (raw) => {
      const message = JSON.parse(raw)
      if (message.event === 'error') refusal ??= new Error(`a chat message was refused: ${JSON.stringify(message.data)}`)
    })
    pair.receiver.on('message', (raw) => {
      const message = JSON.parse(raw)
      if (message.event !== 'chat message') return
      pair.inFlight--
      if (measuring) {
        delivered++
        latencies.push(performance.now() - Number(message.data.text))
      }
      if (rate === undefined && pair.inFlight < WINDOW) sendOne(pair)
    })
  }
  let timer
  if (rate === undefined) {
    for (const pair of sessions) for (let i = 0; i < WINDOW; i++) sendOne(pair)
  } else {
    const started = performance.now()
    let sent = 0
    let next = 0
    timer = setInterval(() => {
      const due = Math.floor((performance.now() - started) / 1000 * rate)
      for (; sent < due; sent++) sendOne(sessions[next++ % sessions.length])
    }, 2)
  }
  await sleep(warmupSeconds * 1000)
  measuring = true
  const from = performance.now()
  const cpuBefore = cpuSeconds?.()
  await sleep(seconds * 1000)
  measuring = false
  const elapsed = (performance.now() - from) / 1000
  const cpuUsPerMessage = cpuSeconds === undefined ? undefined : (cpuSeconds() - cpuBefore) * 1e6 / delivered
  clearInterval(timer)
  await closeAll(sessions.flatMap((pair) => [pair.sender, pair.receiver]))
  if (refusal !== undefined) throw refusal
  latencies.sort((a, b) => a - b)
  return { msgPerSecond: delivered / elapsed, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), cpuUsPerMessage }
}
