// SPEC §11 floor for the two-instance fan-out: the bare `ws` fan-out of
// bare-ws.mjs with a session's members on several instances sharing one
// Redis (REDIS_URL), doing the same Redis work as ours and nothing else. A
// `chat message` is recorded by one Lua script (seq, history append and
// trim, XADD to the fan-out stream), which records the messages of one tick
// together, as ours does; every instance reads the stream with a blocking
// XREAD and sends each frame to its own members. No validation, limits,
// deduplication, TTLs, presence or logging.
import { randomUUID } from 'node:crypto'
import DataLoader from 'dataloader'
import { Redis } from 'ioredis'
import { encode, serveWs } from './ws-server.mjs'

const HISTORY = 50
const STREAM = 'bench:fanout'
const redis = new Redis(process.env.REDIS_URL)
const reader = new Redis(process.env.REDIS_URL)
const BATCH = 64
// KEYS: the stream, then meta and history per message; ARGV per message: its frame's head, session, sender.
redis.defineCommand('record', {
  lua: `
local seqs = {}
for i = 1, (#KEYS - 1) / 2 do
  local meta, history = KEYS[2 * i], KEYS[2 * i + 1]
  local head, sessionId, sender = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local frame = head .. ',"seq":' .. seq .. '}}'
  redis.call('RPUSH', history, frame)
  redis.call('LTRIM', history, -${HISTORY}, -1)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', 10000, '*', 's', sessionId, 'x', sender, 'f', frame)
  seqs[i] = seq
end
return seqs`
})

// As ours (services/sessions/redis-store.ts): the recordings of one tick are one script call.
const recorder = new DataLoader(async (recordings) => {
  const keys = [STREAM]
  const args = []
  for (const { sessionId, userId, head } of recordings) {
    keys.push(`bench:meta:${sessionId}`, `bench:history:${sessionId}`)
    args.push(head, sessionId, userId)
  }
  return redis.record(keys.length, ...keys, ...args)
}, { cache: false, maxBatchSize: BATCH })

/** sessionId → userId → socket, this instance's members only. */
const sessions = new Map()
const state = { closed: false }

serveWs({
  async onFrame ({ socket, userId, joined }, { event, data, id }) {
    if (event === 'join-session') {
      let members = sessions.get(data.sessionId)
      if (members === undefined) sessions.set(data.sessionId, members = new Map())
      members.set(userId, socket)
      joined.set(data.sessionId, data.playerName)
      const history = (await redis.lrange(`bench:history:${data.sessionId}`, 0, -1)).map((frame) => JSON.parse(frame))
      socket.send(encode('session-joined', { sessionId: data.sessionId, userId, participants: [], history }))
    } else if (event === 'chat message') {
      const out = { sessionId: data.sessionId, id: randomUUID(), text: data.text, sender: userId, playerName: joined.get(data.sessionId), timestamp: new Date().toISOString() }
      const head = encode(event, out).slice(0, -2)
      const seq = await recorder.load({ sessionId: data.sessionId, userId, head })
      if (id !== undefined) socket.send(encode('ack', { id, seq }))
    }
  },
  onLeave: (sessionId, userId) => sessions.get(sessionId)?.delete(userId),
  async onClose () {
    state.closed = true
    reader.disconnect()
    await reading
    await redis.quit()
  }
})

async function read () {
  let lastId = '$'
  while (!state.closed) {
    const reply = await reader.xread('COUNT', 500, 'BLOCK', 2000, 'STREAMS', STREAM, lastId).catch(() => null)
    for (const [id, fields] of reply?.[0][1] ?? []) {
      lastId = id
      const [, sessionId, , except, , frame] = fields
      for (const [memberId, socket] of sessions.get(sessionId) ?? []) if (memberId !== except) socket.send(frame)
    }
    // As ours (services/chat/redis-fan-out.ts): a read reply is emptied, or it outlives young-generation GCs.
    if (reply !== null) reply.length = 0
  }
}
const reading = read()
