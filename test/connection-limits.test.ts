import { once } from 'node:events'
import { Agent, request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { loadConfig } from '../src/config.js'
import { defaultMaxConnections, openFileLimit } from '../src/services/http/connection-limits.js'
import { spawnServer, startServer, until } from './helper.js'

/*
 * Idle TCP connections (issue 15, item 1): caps below the open-file limit,
 * per address and in total; silent sockets reaped after HEADERS_TIMEOUT_MS;
 * a process under a low `ulimit -n` survives a flood of them.
 * Other client addresses are other loopback addresses (127.0.0.x).
 */

interface Idle { socket: Socket, closed: boolean, received: string }

/** Opens `count` connections from `localAddress` that never send a byte. */
async function idleSockets (t: { teardown: (fn: () => void) => void }, port: number, localAddress: string, count: number): Promise<Idle[]> {
  return Promise.all(Array.from({ length: count }, async () => {
    const socket = connect({ port, host: '127.0.0.1', localAddress })
    const idle: Idle = { socket, closed: false, received: '' }
    t.teardown(() => socket.destroy())
    socket.on('error', () => {})
    socket.on('data', (chunk) => { idle.received += chunk.toString() })
    socket.on('close', () => { idle.closed = true })
    await once(socket, 'connect')
    return idle
  }))
}

const closedCount = (sockets: Idle[]) => sockets.filter((s) => s.closed).length

/** GET over a fresh connection from `localAddress`. */
async function get (port: number, path: string, localAddress = '127.0.0.1', agent?: Agent): Promise<{ status: number, body: string }> {
  const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    request({ port, host: '127.0.0.1', path, localAddress, agent: agent ?? false }, resolve).on('error', reject).end()
  })
  let body = ''
  for await (const chunk of response) body += chunk
  return { status: response.statusCode ?? 0, body }
}

t.test('the open-file limit is read from /proc and the default cap stays below it', async (t) => {
  const limits = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 4096                 files     \n'
  t.equal(openFileLimit(() => limits), 1024)
  t.equal(openFileLimit(() => limits.replace('1024 ', 'unlimited ')), Number.MAX_SAFE_INTEGER)
  t.equal(openFileLimit(() => { throw new Error('ENOENT') }), undefined)
  t.equal(defaultMaxConnections(1024), 819, '80 % of the limit')
  t.equal(defaultMaxConnections(256), 192, 'at least 64 descriptors kept for everything else')
  t.equal(defaultMaxConnections(20), 1)
  t.ok(Number.isInteger(openFileLimit()), 'this machine has /proc')
  t.equal(loadConfig({}).HTTP_MAX_CONNECTIONS, undefined, 'unset by default: derived')
  t.equal(loadConfig({}).HTTP_MAX_CONNECTIONS_PER_IP, 256)
  t.equal(loadConfig({}).HEADERS_TIMEOUT_MS, 10000)
})

t.test('the server gets its caps and the headers timeout', async (t) => {
  const { app } = await startServer(t, { HTTP_MAX_CONNECTIONS: 123, HEADERS_TIMEOUT_MS: 4000 })
  t.equal(app.server.maxConnections, 123)
  t.equal(app.server.headersTimeout, 4000)
  const { app: derived } = await startServer(t, { REQUEST_TIMEOUT_MS: 2000 })
  t.equal(derived.server.maxConnections, defaultMaxConnections())
  t.equal(derived.server.headersTimeout, 2000, 'never above REQUEST_TIMEOUT_MS')
})

t.test('one address holds at most HTTP_MAX_CONNECTIONS_PER_IP connections; other addresses are served', async (t) => {
  const { port } = await startServer(t, { HTTP_MAX_CONNECTIONS_PER_IP: 20 })
  const flood = await idleSockets(t, port, '127.0.0.2', 40)
  await until(() => closedCount(flood) === 20, 5000, '20 refusals')
  await sleep(200)
  t.equal(closedCount(flood), 20, 'the first 20 stay, the other 20 were closed at once')
  t.same(flood.filter((s) => s.closed).map((s) => s.received), Array(20).fill(''), 'closed without a byte')
  const health = await get(port, '/health/live')
  t.same(health, { status: 200, body: '{"status":"ok"}' }, 'another address is served')
  t.equal((await get(port, '/health/live', '127.0.0.2').catch((error: Error) => error)) instanceof Error, true, 'the flooding address is not')

  for (const idle of flood) idle.socket.destroy()
  await until(() => true)
  let served = false
  for (let attempt = 0; attempt < 50 && !served; attempt++) {
    served = (await get(port, '/health/live', '127.0.0.2').catch(() => undefined))?.status === 200
    if (!served) await sleep(20)
  }
  t.ok(served, 'once its connections close, the address is served again')
})

t.test('HTTP_MAX_CONNECTIONS: past it new connections are dropped; the server carries on', async (t) => {
  const { port } = await startServer(t, { HTTP_MAX_CONNECTIONS: 10, HTTP_MAX_CONNECTIONS_PER_IP: 4 })
  const held = [
    ...await idleSockets(t, port, '127.0.0.2', 4),
    ...await idleSockets(t, port, '127.0.0.3', 4),
    ...await idleSockets(t, port, '127.0.0.4', 2)
  ]
  const over = await idleSockets(t, port, '127.0.0.5', 3)
  await until(() => closedCount(over) === 3, 5000, 'the connections over the cap to be dropped')
  t.equal(closedCount(held), 0, 'those within it stay')
  held[0].socket.destroy()
  await until(() => true)
  let health: { status: number } | undefined
  for (let attempt = 0; attempt < 50 && health === undefined; attempt++) {
    health = await get(port, '/health/live', '127.0.0.6').catch(() => undefined)
    if (health === undefined) await sleep(20)
  }
  t.equal(health?.status, 200, 'a freed slot serves the next client')
})

t.test('a socket that never sends a byte is closed after HEADERS_TIMEOUT_MS', async (t) => {
  const { port } = await startServer(t, { HEADERS_TIMEOUT_MS: 500 })
  const started = Date.now()
  const [silent] = await idleSockets(t, port, '127.0.0.1', 1)
  await until(() => silent.closed, 5000, 'the silent socket to be closed')
  const elapsed = Date.now() - started
  t.ok(elapsed >= 450, `not before the timeout (${elapsed} ms)`)
  t.ok(elapsed < 3000, `within about a second of it (${elapsed} ms)`)
  t.match(silent.received, /^HTTP\/1\.1 408 Request Timeout\r\n[^]*\r\n\r\n\{"error":"The request did not arrive in time","code":"REQUEST_TIMEOUT","statusCode":408\}$/)
})

t.test('under `ulimit -n 256` a flood of idle connections from several addresses neither crashes the process nor stops it serving', async (t) => {
  const server = await spawnServer(t, { HEADERS_TIMEOUT_MS: '3000' }, undefined, [], 256)
  const port = Number(new URL(await server.url).port)
  // A kept-alive connection opened before the flood: the way a load balancer probes.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  t.equal((await get(port, '/health/live', '127.0.0.1', agent)).status, 200)

  const flood = (await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((address) =>
    idleSockets(t, port, address, 120)))).flat()
  await until(() => closedCount(flood) >= 360 - 192 + 1, 10000, 'the connections over the derived cap (192) to be dropped')
  t.equal(server.child.exitCode, null, 'still running')
  const during = await get(port, '/health', '127.0.0.1', agent)
  t.equal(during.status, 200, '/health answers during the flood')
  t.equal(JSON.parse(during.body).status, 'healthy')

  await until(() => closedCount(flood) === 360, 10000, 'the silent sockets to be reaped')
  t.equal((await get(port, '/health/live', '127.0.0.5')).status, 200, 'new clients are served again')
  t.equal(server.child.exitCode, null)
  t.notMatch(server.stderr() + server.stdout(), /EMFILE|process fault/)
})
