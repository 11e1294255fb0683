/*
 * Every Redis key the service uses, in one place. All start with
 * REDIS_PREFIX (`lc:` by default), so several deployments can share a Redis.
 * `<id>` is a session id (companion) or code (multiplayer); the braces around
 * it are a Redis Cluster hash tag, so each session's keys would share a slot.
 *
 * | key                                   | type   | holds                                                        | TTL                      |
 * | ------------------------------------- | ------ | ------------------------------------------------------------ | ------------------------ |
 * | `companion:{<id>}`                    | hash   | createdAt, lastActivity, messageCount (ms / count), persona (JSON) | SESSION_TTL_MS, renewed on activity |
 * | `companion:{<id>}:history`            | list   | the kept turns, oldest first, one JSON `{role, text, timestamp, alternatives?}` each | same |
 * | `companion:{<id>}:replying`           | string | the token of the request generating a reply (SPEC §2.5)      | the longest a reply takes |
 * | `request:<route>:<ip>:<key>`          | string | an Idempotency-Key's record, JSON (SPEC §2.5)                | IDEMPOTENCY_TTL_MS (while running: the longest a reply takes) |
 * | `room:{<id>}`                         | hash   | createdAt, lastActivity, messageCount, joins (a counter that orders participants) | same, also renewed while someone is connected; by its messages at most once a second |
 * | `room:{<id>}:history`                 | list   | the last 50 recorded events, oldest first, one JSON `{event, data}` each | same           |
 * | `room:{<id>}:participants`            | hash   | userId → JSON `[joinOrder, playerName]`                      | same                     |
 * | `room:{<id>}:presence`                | zset   | userId → ms until which its instance vouches for it          | same                     |
 * | `room:{<id>}:msg:<clientMsgId>`       | string | the seq a clientMsgId was recorded with (SPEC §3 duplicates) | 10 minutes (at most SESSION_TTL_MS) |
 * | `fanout`                              | stream | every instance's multiplayer frames, in one order: s (session), q (seq; recorded events only), x (user skipped), f (frame) | none: trimmed to about REDIS_FANOUT_MAXLEN entries |
 * | `sessions:companion`, `sessions:room` | zset   | session id → ms at which it expires: cheap counts without SCAN | none (emptied by expiry) |
 * | `rate:<ip>`                           | string | the general rate limit's count, which the slow-down reads too | RATE_LIMIT_WINDOW_MS from the first request |
 * | `rate-ai:<ip>`                        | string | the AI rate limit's count                                    | AI_RATE_LIMIT_WINDOW_MS from the first request |
 *
 * `<ip>` is the client key (services/limits/client-key.ts: IPv6 by /64).
 * Lua scripts live in ./scripts/: only they write session keys and counters.
 */

export type RedisKeys = ReturnType<typeof redisKeys>

export function redisKeys (prefix: string) {
  const companion = (id: string) => `${prefix}companion:{${id}}`
  const room = (id: string) => `${prefix}room:{${id}}`
  return {
    prefix,
    companion: (id: string) => {
      const meta = companion(id)
      return { meta, history: `${meta}:history`, replying: `${meta}:replying` }
    },
    room: (id: string) => {
      const meta = room(id)
      return {
        meta,
        history: `${meta}:history`,
        participants: `${meta}:participants`,
        presence: `${meta}:presence`,
        clientMsgId: (clientMsgId: string) => `${meta}:msg:${clientMsgId}`
      }
    },
    fanOut: `${prefix}fanout`,
    /** An idempotency record; `key` is already scoped (route, client IP, Idempotency-Key). */
    request: (key: string) => `${prefix}request:${key}`,
    companionIndex: `${prefix}sessions:companion`,
    roomIndex: `${prefix}sessions:room`,
    rateLimit: (client: string) => `${prefix}rate:${client}`,
    aiRateLimit: (client: string) => `${prefix}rate-ai:${client}`
  }
}
