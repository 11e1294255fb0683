// SPEC §11 "default Fastify stack": what a Fastify user builds in an
// afternoon — Fastify's built-in request logging to a file, @fastify/helmet,
// @fastify/cors and @fastify/rate-limit at their defaults. One change: the
// rate limit's `max` is raised so the run measures its cost, not its 429s.
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'
import { LOG_FILE, onSignal, ready, sessionHandler } from './common.mjs'

const app = Fastify({ logger: { level: 'info', file: LOG_FILE } })
await app.register(helmet)
await app.register(cors)
await app.register(rateLimit, { max: 1_000_000_000 })

app.get('/api/sessions/:id', sessionHandler)

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
onSignal(() => app.close())
