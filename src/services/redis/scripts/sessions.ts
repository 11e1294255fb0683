import type { LuaScript } from './index.js'

/*
 * The session store's writes (key layout: ../keys.ts). Each script is one
 * atomic step, so instances never see a half-made change: a join counts and
 * adds in one go, an append trims in the same step, and every write renews
 * the TTL of every key of its session and its expiry in the index (a
 * recorded event at most once a second: touchIfStale).
 *
 * Conventions: write scripts take ARGV[1] = session id, ARGV[2] = now (ms,
 * the caller's clock, like the memory store's), ARGV[3] = SESSION_TTL_MS
 * (recordEvents, which serves several rooms, takes now and the TTL first).
 * A script answers `false` (null in JS) for a session that does not exist.
 * Sessions come back as `{ HGETALL meta, LRANGE history }` (+ `HGETALL
 * participants` for rooms), decoded by ../../sessions/redis-store.ts.
 */

const PRELUDE = `
-- Index entries of expired sessions go when a session is created, so the
-- index holds about the live sessions even when nothing reads the counts.
local function forgetExpired (index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
end

local function touch (keys, index, id, now, ttl)
  for _, key in ipairs(keys) do redis.call('PEXPIRE', key, ttl) end
  redis.call('ZADD', index, now + ttl, id)
end

-- Renews like touch, but at most once per 1 % of the TTL (at most a second):
-- a busy room would otherwise rewrite five expiries per message, over a
-- third of the recording script's time in Redis (measured: 26–34 µs, now
-- 15–19). \`left\`, the meta key's remaining TTL (PTTL), tells when they
-- were renewed last, since touch renews them all together.
local function touchIfStale (keys, index, id, now, ttl, left)
  if left > ttl - math.min(1000, ttl / 100) then return end
  touch(keys, index, id, now, ttl)
end

-- The room under this id is the session its members joined (a code's session
-- that ended is replaced by a new one with another createdAt); false when gone.
local function isSession (meta, createdAt)
  return redis.call('HGET', meta, 'createdAt') == createdAt
end

local function keepLast (list, count)
  if count <= 0 then redis.call('DEL', list) else redis.call('LTRIM', list, -count, -1) end
end

-- Participants whose instance stopped vouching for them (it died) are dropped.
local function prune (participants, presence, now)
  local gone = redis.call('ZRANGEBYSCORE', presence, '-inf', now)
  if #gone > 0 then
    redis.call('HDEL', participants, unpack(gone))
    redis.call('ZREMRANGEBYSCORE', presence, '-inf', now)
  end
end

local function companion (meta, history)
  return { redis.call('HGETALL', meta), redis.call('LRANGE', history, 0, -1) }
end

local function room (meta, history, participants)
  return { redis.call('HGETALL', meta), redis.call('LRANGE', history, 0, -1), redis.call('HGETALL', participants) }
end
`

/** A script with the helpers above. */
export const script = (keys: LuaScript['keys'], body: string, options: Pick<LuaScript, 'ordered'> = {}): LuaScript => ({ keys, lua: PRELUDE + body, ...options })

/** KEYS for a room's writes: meta, history, participants, presence, room index. */
const ROOM_KEYS = 5
/** recordEvents' KEYS and ARGV per event. */
const RECORD_KEYS = 5
const RECORD_ARGS = 6

export const sessionScripts = {
  /** KEYS: companion meta, history; room meta, history, participants, presence. ARGV: now. → ['companion' | 'room', session] */
  get: script(6, `
if redis.call('EXISTS', KEYS[1]) == 1 then return { 'companion', companion(KEYS[1], KEYS[2]) } end
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
prune(KEYS[5], KEYS[6], ARGV[1])
return { 'room', room(KEYS[3], KEYS[4], KEYS[5]) }
`),

  /** KEYS: companion meta, companion index. ARGV: id, now, ttl, persona JSON. */
  createCompanion: script(2, `
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'lastActivity', ARGV[2], 'messageCount', 0, 'persona', ARGV[4])
forgetExpired(KEYS[2], tonumber(ARGV[2]))
touch({ KEYS[1] }, KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
`),

  /** KEYS: companion meta, history, companion index. ARGV: id, now, ttl, keep, turn JSON… → session */
  appendTurns: script(3, `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local count = #ARGV - 4
if count > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 5)) end
keepLast(KEYS[2], tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[1], 'messageCount', count)
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
touch({ KEYS[1], KEYS[2] }, KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return companion(KEYS[1], KEYS[2])
`),

  /**
   * Join unless full, creating the room if new. ARGV: id, now, ttl, userId,
   * playerName, maxParticipants, presence deadline. → ['ok', created 0|1, session] | ['full']
   */
  join: script(ROOM_KEYS, `
local now = tonumber(ARGV[2])
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  created = 1
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'messageCount', 0, 'joins', 0)
  forgetExpired(KEYS[5], now)
else
  prune(KEYS[3], KEYS[4], now)
end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then
  -- A refusal writes nothing: it is no activity.
  if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[6]) then return { 'full' } end
  local order = redis.call('HINCRBY', KEYS[1], 'joins', 1)
  redis.call('HSET', KEYS[3], ARGV[4], cjson.encode({ order, ARGV[5] }))
end
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[4])
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
touch({ KEYS[1], KEYS[2], KEYS[3], KEYS[4] }, KEYS[5], ARGV[1], now, tonumber(ARGV[3]))
return { 'ok', created, room(KEYS[1], KEYS[2], KEYS[3]) }
`),

  /** ARGV: id, now, ttl, userId. → session */
  leave: script(ROOM_KEYS, `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local now = tonumber(ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[4])
prune(KEYS[3], KEYS[4], now)
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
touch({ KEYS[1], KEYS[2], KEYS[3], KEYS[4] }, KEYS[5], ARGV[1], now, tonumber(ARGV[3]))
return room(KEYS[1], KEYS[2], KEYS[3])
`),

  /**
   * Records multiplayer events, each appended to the fan-out stream in the
   * same step (SPEC §3, §9): the events of one tick, of any rooms, in one
   * call (../../sessions/redis-store.ts), in the order given. KEYS: the room index, the
   * fan-out stream, then per event its room's first four keys and its
   * clientMsgId key (any key of the room when there is no id). ARGV: now,
   * ttl, deadline (ms, Redis' clock), how long a clientMsgId is remembered
   * (ms), stream length, then per event: room id, keep, the event's JSON
   * without its last two braces (the script adds `,"seq":N}}`), clientMsgId
   * ('' for none), the user the fan-out skips ('' for none), the createdAt
   * of the session the sender joined ('' for any).
   * → { 'late' }, or per event its seq, -seq of the original for a
   * duplicate, 0 for no such room, or another one under its id (seqs start at 1).
   *
   * The deadline is checked against Redis' own TIME: a script that runs
   * after its callers gave up (Redis was frozen, the command had timed out
   * and the senders were told STORE_UNAVAILABLE) records nothing.
   */
  recordEvents: script('any', `
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[3]) then return { 'late' } end
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local idTtl = math.min(tonumber(ARGV[4]), ttl)

local function record (meta, history, participants, presence, idKey, id, keep, head, clientMsgId, except, createdAt)
  -- PTTL answers -2 for a missing key: the room's existence and its last renewal in one call.
  local left = redis.call('PTTL', meta)
  if left == -2 then return 0 end
  if createdAt ~= '' and not isSession(meta, createdAt) then return 0 end
  if clientMsgId ~= '' then
    local original = redis.call('GET', idKey)
    if original then return -tonumber(original) end
  end
  -- No prune here: nothing recorded depends on who is present, and every
  -- script that answers with the participants (get, join, leave) prunes first.
  local seq = redis.call('HINCRBY', meta, 'messageCount', 1)
  local frame = head .. ',"seq":' .. seq .. '}}'
  -- A history the room's first event creates has no expiry until the next renewal.
  if redis.call('RPUSH', history, frame) == 1 then redis.call('PEXPIRE', history, ttl) end
  keepLast(history, tonumber(keep))
  if clientMsgId ~= '' then redis.call('SET', idKey, seq, 'PX', idTtl) end
  redis.call('HSET', meta, 'lastActivity', ARGV[1])
  touchIfStale({ meta, history, participants, presence }, KEYS[1], id, now, ttl, left)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 's', id, 'q', seq, 'x', except, 'f', frame)
  return seq
end

local results = {}
for i = 1, (#KEYS - 2) / ${RECORD_KEYS} do
  local k = 2 + (i - 1) * ${RECORD_KEYS}
  local a = 5 + (i - 1) * ${RECORD_ARGS}
  results[i] = record(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
end
return results
`, { ordered: true }),

  /**
   * An instance vouching for its connected members: their presence and the
   * room's TTL are renewed, its lastActivity is not (presence is not activity).
   * A member pruned meanwhile (its instance stalled, or cut off from Redis,
   * longer than the presence TTL) is connected still: it is back, last in
   * join order (even in a room that filled up meanwhile: it never left).
   * ARGV: id, now, ttl, presence deadline, the room's createdAt, then userId,
   * playerName per member. → 1, or 0 when the room is gone or is another
   * session under the same id (started anew after this one ended).
   */
  refresh: script(ROOM_KEYS, `
if not isSession(KEYS[1], ARGV[5]) then return 0 end
for i = 6, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then
    local order = redis.call('HINCRBY', KEYS[1], 'joins', 1)
    redis.call('HSET', KEYS[3], ARGV[i], cjson.encode({ order, ARGV[i + 1] }))
  end
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[i])
end
touch({ KEYS[1], KEYS[2], KEYS[3], KEYS[4] }, KEYS[5], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
`),

  /** KEYS: companion meta, history, index; room meta, history, participants, presence, index. ARGV: id. → 1 | 0 */
  delete: script(8, `
if redis.call('DEL', KEYS[1], KEYS[2]) > 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 1
end
if redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7]) > 0 then
  redis.call('ZREM', KEYS[8], ARGV[1])
  return 1
end
return 0
`),

  /** KEYS: companion index, room index. ARGV: now. → [companions, rooms]; forgets expired entries on the way. */
  counts: script(2, `
forgetExpired(KEYS[1], ARGV[1])
forgetExpired(KEYS[2], ARGV[1])
return { redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]) }
`)
} satisfies Record<string, LuaScript>
