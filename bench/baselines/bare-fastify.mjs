// Baseline for SPEC §11: a bare Fastify app answering the same JSON as our
// /health and /api/sessions/:id, with nothing else on the request path.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
const session = JSON.parse(process.env.BENCH_SESSION ?? '{}')

app.get('/health', async () => ({
  status: 'healthy',
  timestamp: new Date().toISOString(),
  version: '1.0.0',
  uptime: { seconds: Math.floor(process.uptime()), minutes: 0, hours: 0, days: 0 },
  memory: { rssMB: Math.round(process.memoryUsage.rss() / 1048576), heapUsedMB: 0 }
}))
app.get('/api/sessions/:id', async () => session)

await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`"port":${app.server.address().port},"msg":"ready"\n`)
