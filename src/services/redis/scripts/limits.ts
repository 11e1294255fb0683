import type { LuaScript } from './index.js'

/* The slow-down counter (key layout: ../keys.ts). */
export const limitScripts = {
  /**
   * A fixed window like the memory store's: the first hit starts it.
   * KEYS: the client's counter. ARGV: window ms. → this request's number in the window.
   */
  hit: {
    keys: 1,
    lua: `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
`
  }
} satisfies Record<string, LuaScript>
