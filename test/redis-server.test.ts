import t from 'tap'
import { startRedis } from './redis-server.js'

t.test('the test Redis answers, freezes, dies and comes back on its port', async (t) => {
  const redis = await startRedis(t)
  t.equal(await redis.command('PING'), '+PONG\r\n')
  t.equal(await redis.command('SET', 'k', 'v'), '+OK\r\n')
  redis.pause()
  await t.rejects(redis.command('PING'), /timed out/)
  redis.resume()
  t.equal(await redis.command('GET', 'k'), '$1\r\nv\r\n')
  await redis.kill()
  await t.rejects(redis.command('PING'), /ECONNREFUSED/)
  await redis.start()
  t.equal(await redis.command('GET', 'k'), '$-1\r\n', 'no persistence: a restarted Redis is empty')
})
