// SPEC §11 baseline: a bare Fastify app answering the same JSON as our
// routes (and calling the fake Gemini through the same SDK for chat), with
// nothing else on the request path.
import Fastify from 'fastify'
import { chat, healthBody, NOT_FOUND_BODY, onSignal, ready, SESSION_BODY, SESSION_ID } from './common.mjs'

const app = Fastify({ logger: false })

app.get('/health', async () => healthBody())
app.get('/api/sessions/:id', async (request, reply) => {
  reply.type('application/json; charset=utf-8')
  if (request.params.id === SESSION_ID) return SESSION_BODY
  return reply.code(404).send(NOT_FOUND_BODY)
})
app.post('/api/ai-companion/chat', async (request) => chat(request.body))

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
onSignal(() => app.close())
