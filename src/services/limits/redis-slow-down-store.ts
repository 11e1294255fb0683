import type { Redis } from 'ioredis'
import type { RedisKeys } from '../redis/keys.js'
import { defineScripts } from '../redis/scripts/index.js'
import { limitScripts } from '../redis/scripts/limits.js'
import type { SlowDownStore } from './slow-down.js'

/**
 * The slow-down counters in Redis, shared by every instance (SPEC §5, §9).
 * A failure rejects; the slow-down lets the request through (fail open).
 */
export function createRedisSlowDownStore ({ redis, keys, windowMs }: { redis: Redis, keys: RedisKeys, windowMs: number }): SlowDownStore {
  const scripts = defineScripts(redis, 'limits', limitScripts)
  return {
    hit: async (client) => Number(await scripts.hit([keys.slowDown(client)], [windowMs])),
    // The connection belongs to the Redis plugin, which closes it.
    close: async () => {}
  }
}
