// SPEC §11 "same-work floor": bare Fastify that sets the same response
// headers as our server from a precomputed object and writes the same
// requests.log line with pino, and nothing else. What our full stack may add
// on top of this is the rate limit, validation, CORS and the not-found path.
import { HEADERS, healthBody, sessionHandler } from './common.mjs'
import { floorApp } from './floor-app.mjs'

const { app, start } = floorApp()
app.addHook('onRequest', (_request, reply, done) => {
  reply.headers(HEADERS)
  done()
})

app.get('/health', async () => healthBody())
app.get('/api/sessions/:id', sessionHandler)

await start()
