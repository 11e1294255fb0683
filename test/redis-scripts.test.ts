import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { createRedisConnections } from '../src/services/redis/connection.js'
import { redisKeys } from '../src/services/redis/keys.js'
import { defineScripts } from '../src/services/redis/scripts/index.js'
import { createRedisSessionStore } from '../src/services/sessions/redis-store.js'
import { startRedis } from './redis-server.js'

/* Scripts run by SHA with ioredis; those called in one turn of the event loop leave in one socket write. */

t.test('script calls made in one turn leave together, and each settles with its own reply', async (t) => {
  const redis = await startRedis(t)
  const connections = createRedisConnections({ url: redis.url, commandTimeoutMs: 5000, log: { info: () => undefined, warn: () => undefined } })
  t.teardown(() => connections.close())
  t.equal(await connections.whenReady(5000), 'ok')
  const client = connections.client
  const { add } = defineScripts(client, 'test', { add: { keys: 1, lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])" } })
  t.equal(await add(['n'], [0]), 0, 'known to Redis by now (a first call may need EVAL after EVALSHA)')

  const writes: number[] = []
  const socket = client.stream
  const write = socket._writev?.bind(socket)
  socket._writev = (chunks, callback) => { writes.push(chunks.length); write?.(chunks, callback) }
  t.teardown(() => { socket._writev = write })

  const replies = [add(['n'], [1]), add(['n'], [10]), add(['n'], [100])]
  t.equal(socket.writableCorked, 1, 'held until the turn ends')
  t.same(await Promise.all(replies), [1, 11, 111])
  t.same(writes, [3], 'three commands, one write')
  t.equal(socket.writableCorked, 0)
})

/** A TCP proxy in front of Redis whose replies can be held, then let through one chunk at a time. */
async function replyHoldingProxy (t: Test, port: number) {
  const held: Array<{ to: Socket, chunk: Buffer }> = []
  const state = { holding: false }
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    client.on('data', (chunk) => upstream.write(chunk))
    upstream.on('data', (chunk: Buffer) => { if (state.holding) held.push({ to: client, chunk }); else client.write(chunk) })
    for (const socket of [client, upstream]) socket.on('error', () => undefined)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    state,
    held,
    releaseOne () { const next = held.shift(); next?.to.write(next.chunk) },
    releaseAll () {
      state.holding = false
      for (const { to, chunk } of held.splice(0)) to.write(chunk)
    }
  }
}

t.test('recordings run in call order or fail, though Redis forgot the script (SCRIPT FLUSH) with several in flight', async (t) => {
  const redis = await startRedis(t)
  const proxy = await replyHoldingProxy(t, redis.port)
  const connections = createRedisConnections({ url: proxy.url, commandTimeoutMs: 5000, log: { info: () => undefined, warn: () => undefined } })
  t.teardown(() => connections.close())
  t.equal(await connections.whenReady(5000), 'ok')
  const store = createRedisSessionStore({ redis: connections.client, keys: redisKeys('order:'), ttlMs: 60_000, presenceTtlMs: 30_000 })
  t.teardown(() => store.close())
  await store.join('room', { userId: 'u', playerName: 'P' }, 10)
  const record = async (text: string) => await store.recordEvent('room', { event: 'chat message', data: { sessionId: 'room', text } }, { keep: 50 })
    .then((result) => result?.seq, (error: Error & { code: string }) => error.code)
  t.equal(await record('first'), 1)
  t.match(await redis.command('SCRIPT', 'FLUSH'), /OK/)

  proxy.state.holding = true
  const a = record('A')
  await sleep(30)
  const b = record('B')
  await sleep(30)
  t.equal(proxy.held.length, 2, 'both replies held, in chunks of their own')
  // A's NOSCRIPT comes back. ioredis' own retry would resend A now, and C, sent next, would run before B's resend.
  proxy.releaseOne()
  await sleep(30)
  const c = record('C')
  await sleep(30)
  proxy.releaseAll()
  t.same({ A: await a, B: await b, C: await c }, { A: 'STORE_UNAVAILABLE', B: 'STORE_UNAVAILABLE', C: 2 }, 'the two Redis forgot fail; the next runs, after them')
  t.equal(await record('D'), 3)
  t.same((await store.get('room'))?.history.map((frame) => JSON.parse(frame as string).data.text), ['first', 'C', 'D'])
})
