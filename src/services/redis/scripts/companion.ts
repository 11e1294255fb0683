import type { LuaScript } from './index.js'
import { script } from './sessions.js'

/*
 * The companion half's atomic steps (SPEC §2.4–2.5): a revised reply, the
 * reply lock's release and an idempotency claim each read and write in one
 * go, so two instances never interleave inside them.
 */

export const companionScripts = {
  /**
   * KEYS: companion meta, history, companion index. ARGV: id, now, ttl, keep,
   * reply JSON (an object without alternatives), max alternatives. After a
   * user turn the reply is appended; otherwise it replaces the last turn,
   * whose text joins that turn's alternatives (spliced into the reply's JSON,
   * so the reply's numbers never pass through Lua's). → session
   */
  reviseReply: script(3, `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local last = redis.call('LINDEX', KEYS[2], -1)
local previous = last and cjson.decode(last)
if previous and previous.role == 'model' then
  local alternatives = previous.alternatives or {}
  table.insert(alternatives, previous.text)
  while #alternatives > tonumber(ARGV[6]) do table.remove(alternatives, 1) end
  redis.call('LSET', KEYS[2], -1, string.sub(ARGV[5], 1, -2) .. ',"alternatives":' .. cjson.encode(alternatives) .. '}')
else
  redis.call('RPUSH', KEYS[2], ARGV[5])
  keepLast(KEYS[2], tonumber(ARGV[4]))
  redis.call('HINCRBY', KEYS[1], 'messageCount', 1)
end
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
touch({ KEYS[1], KEYS[2] }, KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return companion(KEYS[1], KEYS[2])
`),

  /** KEYS: the lock. ARGV: token. Deletes it only for its holder. */
  unlockReply: { keys: 1, lua: "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0" },

  /**
   * KEYS: the record. ARGV: fingerprint, running TTL, the running record's
   * JSON. Claims a new key, or a failed attempt with the same fingerprint.
   * → ['claimed', the failed record's JSON or ''] | ['found', record JSON]
   */
  beginRequest: {
    keys: 1,
    lua: `
local found = redis.call('GET', KEYS[1])
if found then
  local record = cjson.decode(found)
  if record.state ~= 'failed' or record.fingerprint ~= ARGV[1] then return { 'found', found } end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return { 'claimed', found or '' }
`
  }
} satisfies Record<string, LuaScript>
