import fp from 'fastify-plugin'
import type { RedisConnections } from '../services/redis/connection.js'
import { redisKeys, type RedisKeys } from '../services/redis/keys.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The Redis connections with REDIS_URL, undefined without (everything stays in this instance's memory). */
    redis: RedisConnections | undefined
    /** Every Redis key, under REDIS_PREFIX (services/redis/keys.ts). */
    redisKeys: RedisKeys
  }
}

/** How long startup waits for a first answer, so a normal boot is ready at once; a Redis that is down does not stop it. */
const STARTUP_WAIT_MS = 2000

/**
 * Redis (SPEC §9), registered before the rate limits and sessions that use
 * it, so its onClose runs after theirs: it is closed after the drain.
 * An unreachable Redis is not a configuration error: the instance starts,
 * is live but not ready, and becomes ready by itself when Redis answers.
 */
export default fp(async (app) => {
  const { REDIS_URL, REDIS_PREFIX, REDIS_COMMAND_TIMEOUT_MS } = app.config
  app.decorate('redisKeys', redisKeys(REDIS_PREFIX))
  if (REDIS_URL === undefined) {
    app.decorate('redis', undefined)
    return
  }
  // Loaded only when used: ioredis adds noticeably to the start of every process.
  const { createRedisConnections } = await import('../services/redis/connection.js')
  const redis = createRedisConnections({ url: REDIS_URL, commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS, log: app.log, name: `lovers-code:${app.instanceId}` })
  app.decorate('redis', redis)
  app.addHook('onClose', async () => redis.close())
  if (await redis.whenReady(STARTUP_WAIT_MS) === 'down') {
    app.log.warn({ redis: 'down' }, 'redis unreachable at startup: starting anyway, not ready until it answers')
  }
}, { name: 'redis', dependencies: ['config', 'logging'] })
