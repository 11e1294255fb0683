import { createKeyedRate } from '../limits/keyed-rate.js'

/*
 * At most `max` log lines per key (a client address) per window, so a client
 * cannot turn a log file into a disk filler by repeating an error; the next
 * line logged for the key says how many were left out meanwhile.
 */

export interface LogSamplerOptions {
  max: number
  windowMs: number
  maxKeys?: number
  now?: () => number
}

const MAX_KEYS = 10_000

export function createLogSampler ({ max, windowMs, maxKeys = MAX_KEYS, now }: LogSamplerOptions) {
  const rate = createKeyedRate({ rate: max, windowMs, maxKeys, now })
  // Insertion order: the oldest key is forgotten first once maxKeys are counted.
  const suppressed = new Map<string, number>()
  return {
    /** undefined: leave this line out; else how many lines of `key` were left out since its last one. */
    admit (key: string): number | undefined {
      if (rate.take(key)) {
        const count = suppressed.get(key) ?? 0
        suppressed.delete(key)
        return count
      }
      if (!suppressed.has(key) && suppressed.size >= maxKeys) suppressed.delete(suppressed.keys().next().value as string)
      suppressed.set(key, (suppressed.get(key) ?? 0) + 1)
      return undefined
    },
    close: () => rate.close()
  }
}
