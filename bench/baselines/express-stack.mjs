// SPEC §11: the Express 4 equivalent of the previous implementation —
// helmet, cors, express-rate-limit, express-slow-down, a JSON body parser,
// one pino requests.log line per request, socket.io on the same server for
// the chat, and the same routes. Limits raised so the run measures their
// cost, not their refusals.
import { createServer } from 'node:http'
import cors from 'cors'
import express from 'express'
import rateLimit from 'express-rate-limit'
import slowDown from 'express-slow-down'
import helmet from 'helmet'
import { pino } from 'pino'
import { Server as SocketIo } from 'socket.io'
import { chat, healthBody, LOG_FILE, NOT_FOUND_BODY, onSignal, ready, requestLine, SESSION_BODY, SESSION_ID } from './common.mjs'

const destination = pino.destination({ dest: LOG_FILE, sync: false })
const log = pino({ timestamp: pino.stdTimeFunctions.isoTime, base: { log: 'requests' } }, destination)

const app = express()
app.disable('x-powered-by')
app.use(helmet())
app.use(cors())
app.use(rateLimit({ windowMs: 15 * 60 * 1000, limit: 1_000_000_000, standardHeaders: 'draft-7', legacyHeaders: false }))
app.use(slowDown({ windowMs: 15 * 60 * 1000, delayAfter: 999_999_999, delayMs: (hits) => hits * 500 }))
app.use(express.json({ limit: '10kb' }))
app.use((request, response, next) => {
  const started = process.hrtime.bigint()
  response.on('finish', () => {
    log.info(requestLine(request.get('x-request-id') ?? null, request.method, request.route?.path ?? null, request.path,
      response.statusCode, Number(process.hrtime.bigint() - started) / 1e6, request.ip, request.get('user-agent')), 'request completed')
  })
  next()
})

app.get('/health', (_request, response) => { response.json(healthBody()) })
app.get('/api/sessions/:id', (request, response) => {
  response.type('application/json; charset=utf-8')
  if (request.params.id === SESSION_ID) response.send(SESSION_BODY)
  else response.status(404).send(NOT_FOUND_BODY)
})
app.post('/api/ai-companion/chat', (request, response, next) => {
  chat(request.body).then((body) => response.json(body), next)
})

const server = createServer(app)
// socket.io's per-connection cost, for the idle-connection figure.
const io = new SocketIo(server, { cors: { origin: '*' } })
io.on('connection', (socket) => {
  socket.on('join-session', ({ sessionId }) => { socket.join(sessionId) })
  socket.on('chat message', (data) => { socket.to(data.sessionId).emit('chat message', data) })
})

server.listen(0, '127.0.0.1', () => ready(server.address().port))
onSignal(() => new Promise((resolve) => { io.close(); server.close(resolve); destination.flushSync() }))
