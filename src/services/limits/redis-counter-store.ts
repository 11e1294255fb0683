import type { Redis } from 'ioredis'
import { defineScripts } from '../redis/scripts/index.js'
import { limitScripts } from '../redis/scripts/limits.js'
import type { CounterStore } from './counter-store.js'

export interface RedisCounterStoreOptions {
  redis: Redis
  /** The Redis key of a client's counter (../redis/keys.ts). */
  keyOf: (client: string) => string
  windowMs: number
  now?: () => number
}

/**
 * The counters in Redis, shared by every instance (SPEC §5, §9): one script,
 * so one round trip, per hit. A failure rejects; the limiter lets the
 * request through (fail open).
 */
export function createRedisCounterStore ({ redis, keyOf, windowMs, now = Date.now }: RedisCounterStoreOptions): CounterStore {
  const scripts = defineScripts(redis, 'limits', limitScripts)
  return {
    hit: async (client) => {
      const [count, ttl] = await scripts.hit([keyOf(client)], [windowMs]) as [number, number]
      return { count, resetAt: now() + ttl }
    },
    // The connection belongs to the Redis plugin, which closes it.
    close: async () => {}
  }
}
