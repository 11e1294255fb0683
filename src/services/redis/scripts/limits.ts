import type { LuaScript } from './index.js'

/* The per-client request counters (key layout: ../keys.ts). */
export const limitScripts = {
  /**
   * A fixed window like the memory store's: the first hit starts it.
   * KEYS: the client's counter. ARGV: window ms. → [this hit's number in the window, ms until it ends]
   */
  hit: {
    keys: 1,
    lua: `
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return { count, tonumber(ARGV[1]) }
end
return { count, redis.call('PTTL', KEYS[1]) }
`
  }
} satisfies Record<string, LuaScript>
