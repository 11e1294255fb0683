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
 * | `room:{<id>}`                         | hash   | createdAt, lastActivity, messageCount, joins (a counter that orders participants) | same, also renewed while someone is connected |
 * | `room:{<id>}:history`                 | list   | the last 50 recorded events, oldest first, one JSON `{event, data}` each | same           |
 * | `room:{<id>}:participants`            | hash   | userId → JSON `[joinOrder, playerName]`                      | same                     |
 * | `room:{<id>}:presence`                | zset   | userId → ms until which its instance vouches for it          | same                     |
 * | `sessions:companion`, `sessions:room` | zset   | session id → ms at which it expires: cheap counts without SCAN | none (emptied by expiry) |
 * | `rate:<ip>`, `rate:undefinedundefined-<ip>` | string | @fastify/rate-limit counters: general, AI (its child-store naming) | the window |
 * | `slow:<ip>`                           | string | the slow-down counter                                        | the general window       |
 *
 * Sessions' Lua scripts live in ./scripts/, and only they write session keys.
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
      return { meta, history: `${meta}:history`, participants: `${meta}:participants`, presence: `${meta}:presence` }
    },
    /** An idempotency record; `key` is already scoped (route, client IP, Idempotency-Key). */
    request: (key: string) => `${prefix}request:${key}`,
    companionIndex: `${prefix}sessions:companion`,
    roomIndex: `${prefix}sessions:room`,
    /** @fastify/rate-limit's `nameSpace`: it appends the client key (and a route part for child limits). */
    rateLimit: `${prefix}rate:`,
    slowDown: (client: string) => `${prefix}slow:${client}`
  }
}
