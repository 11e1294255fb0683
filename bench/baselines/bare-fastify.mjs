// SPEC §11 baseline: a bare Fastify app answering the same JSON as our
// routes (and calling the fake Gemini through the same SDK for chat), with
// nothing else on the request path.
import Fastify from 'fastify'
import { chat, healthBody, onSignal, ready, sessionHandler } from './common.mjs'

const app = Fastify({ logger: false })

app.get('/health', async () => healthBody())
app.get('/api/sessions/:id', sessionHandler)
app.post('/api/ai-companion/chat', async (request) => chat(request.body))

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
onSignal(() => app.close())
