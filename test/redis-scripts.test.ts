import t from 'tap'
import { createRedisConnections } from '../src/services/redis/connection.js'
import { defineScripts } from '../src/services/redis/scripts/index.js'
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
