// SPEC §11 baseline for the WebSocket figures: a bare `ws` server doing the
// same fan-out as our /ws (join a 2-person session, `chat message` parsed,
// stamped with id/seq/time, kept in a 50-message history, encoded once and
// sent to the other members, `ack` to the sender when it sent an id), and
// nothing else: no validation, limits, heartbeat or logging.
import { randomUUID } from 'node:crypto'
import { encode, serveWs } from './ws-server.mjs'

const HISTORY = 50
const sessions = new Map()

serveWs({
  onFrame ({ socket, userId, joined }, { event, data, id }) {
    if (event === 'join-session') {
      let session = sessions.get(data.sessionId)
      if (session === undefined) sessions.set(data.sessionId, session = { members: new Map(), history: [], seq: 0 })
      session.members.set(userId, { socket, playerName: data.playerName })
      joined.set(data.sessionId, data.playerName)
      socket.send(encode('session-joined', { sessionId: data.sessionId, userId, participants: [], history: session.history }))
    } else if (event === 'chat message') {
      const session = sessions.get(data.sessionId)
      const out = { sessionId: data.sessionId, id: randomUUID(), text: data.text, sender: userId, playerName: joined.get(data.sessionId), timestamp: new Date().toISOString(), seq: ++session.seq }
      session.history.push({ event, data: out })
      if (session.history.length > HISTORY) session.history.shift()
      const frame = encode('chat message', out)
      for (const [memberId, member] of session.members) if (memberId !== userId) member.socket.send(frame)
      if (id !== undefined) socket.send(encode('ack', { id, seq: out.seq }))
    }
  },
  onLeave: (sessionId, userId) => sessions.get(sessionId)?.members.delete(userId)
})
