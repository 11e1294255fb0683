import { createMemoryCounterStore } from './counter-store.js'

/*
 * "At most `rate` per `windowMs` per key", for limits that have no HTTP
 * request to hang the rate limiter on (a WebSocket join, an upgrade refused
 * before routing, a log line). The counting is the rate limits' memory store:
 * fixed windows, at most `maxKeys` keys, the oldest window forgotten first.
 */

/** Clients tracked at once, as for the HTTP rate limits. */
const MAX_KEYS = 10_000

export interface KeyedRateOptions {
  rate: number
  windowMs: number
  maxKeys?: number
  now?: () => number
}

export function createKeyedRate ({ rate, windowMs, maxKeys = MAX_KEYS, now }: KeyedRateOptions) {
  const counter = createMemoryCounterStore({ windowMs, maxKeys, now })
  return {
    /** Counts one event of `key`; false once the key is over the rate in its window. */
    take: (key: string): boolean => counter.hit(key).count <= rate,
    /** What to tell a refused client: the whole window, an upper bound. */
    retryAfterSeconds: Math.max(1, Math.ceil(windowMs / 1000)),
    close: () => counter.close()
  }
}

export type KeyedRate = ReturnType<typeof createKeyedRate>
