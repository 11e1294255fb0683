import { Redis, type RedisOptions } from 'ioredis'

/*
 * Every Redis connection of the service (SPEC §9), made here with one set of
 * options so none of them can hang a request on a dead Redis:
 * - no offline queue: while disconnected a command fails at once instead of
 *   waiting (and piling up in memory) for a reconnect;
 * - a command timeout (REDIS_COMMAND_TIMEOUT_MS, a second) for a Redis that is connected but
 *   frozen (SIGSTOP, a stalled VM); the health check below then cuts that
 *   connection, so the commands queued on it fail too and the next ones fail
 *   at once;
 * - reconnection forever, with a capped, jittered backoff.
 * ioredis reads redis:// and rediss:// (TLS) URLs with password and db itself.
 * @see https://github.com/redis/ioredis#connect-to-redis
 *
 * ioredis 5, not 6: 6 decodes every reply with its new RESP3 decoder, which
 * read the fan-out stream 2.4× slower than 5's redis-parser (9.1–10.0
 * against 3.8–3.9 µs per entry, 20,000 entries read 50 at a time, same
 * machine); the service uses nothing of RESP3 (README, Results).
 */

/** A TCP connect (or TLS handshake) that takes longer is abandoned and retried. */
const CONNECT_TIMEOUT_MS = 2000
/** A connection we cut is destroyed this soon if Redis does not close its end (a frozen one never does). */
const DISCONNECT_TIMEOUT_MS = 100
const FIRST_RECONNECT_DELAY_MS = 100
export const MAX_RECONNECT_DELAY_MS = 5000
/** How often Redis is pinged: readiness notices a frozen Redis within this plus the command timeout. */
const HEALTH_INTERVAL_MS = 250

/**
 * The wait before reconnect attempt `attempt` (1, 2, …): doubling from 100 ms,
 * capped at 5 s, the upper half of it random so instances that lost the same
 * Redis do not all come back in the same millisecond.
 */
export function reconnectDelay (attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_RECONNECT_DELAY_MS, FIRST_RECONNECT_DELAY_MS * 2 ** Math.min(attempt - 1, 16))
  return Math.round(ceiling / 2 + random() * ceiling / 2)
}

export function connectionOptions (name: string, commandTimeoutMs: number, overrides: RedisOptions = {}): RedisOptions {
  return {
    connectionName: name,
    enableOfflineQueue: false,
    // A command in flight when the connection drops fails at once, and is
    // never sent again after the reconnect: the caller was already told it failed.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: CONNECT_TIMEOUT_MS,
    disconnectTimeout: DISCONNECT_TIMEOUT_MS,
    retryStrategy: (attempt) => reconnectDelay(attempt),
    ...overrides
  }
}

export type RedisState = 'ok' | 'down'

interface Log {
  info: (object: object, message: string) => void
  warn: (object: object, message: string) => void
}

export interface RedisConnectionsOptions {
  url: string
  commandTimeoutMs: number
  log: Log
  /** Shown by CLIENT LIST, with the role of each connection appended. */
  name?: string
  healthIntervalMs?: number
}

export interface RedisConnections {
  /** The command connection: short commands and scripts, never blocking ones. */
  readonly client: Redis
  /** `ok` while the command connection answers; `down` before its first answer and during outages. */
  readonly state: RedisState
  /** Resolves once Redis answers, or after `timeoutMs` (then `state` tells which). */
  whenReady: (timeoutMs: number) => Promise<RedisState>
  /**
   * Another connection, for what would stall the command connection
   * (blocking XREAD, SUBSCRIBE). Same fail-fast and reconnect options unless
   * overridden (a blocking read needs `commandTimeout` above its block time);
   * closed by `close`.
   */
  connect: (role: string, overrides?: RedisOptions) => Redis
  close: () => Promise<void>
}

const errorText = (error: unknown) => error instanceof Error ? error.message : String(error)

export function createRedisConnections ({ url, commandTimeoutMs, log, name = 'lovers-code', healthIntervalMs = HEALTH_INTERVAL_MS }: RedisConnectionsOptions): RedisConnections {
  const connections = new Set<Redis>()
  let state: RedisState = 'down'
  let everReady = false
  let closed = false
  let lastError = ''
  const waiters = new Set<() => void>()

  function setState (next: RedisState, reason?: string): void {
    if (next === state) return
    state = next
    if (next === 'ok') {
      log.info({ redis: 'ok' }, everReady ? 'redis reachable again' : 'redis connected')
      everReady = true
      for (const wake of waiters) wake()
    } else if (!closed) {
      // Once per outage, not per reconnect attempt.
      log.warn({ redis: 'down', reason }, 'redis unreachable: session operations answer 503 STORE_UNAVAILABLE, rate limits fail open')
    }
  }

  function connect (role: string, overrides?: RedisOptions): Redis {
    const connection = new Redis(url, connectionOptions(`${name}:${role}`, commandTimeoutMs, overrides))
    // Without a listener ioredis prints every failed attempt to the console;
    // state changes are logged once by the health check instead.
    connection.on('error', (error: unknown) => { lastError = errorText(error) })
    // 'end' only follows a quit or disconnect: reconnection never gives up.
    connection.once('end', () => connections.delete(connection))
    connections.add(connection)
    return connection
  }

  // No auto-pipelining: it saved socket writes under saturation, but at
  // 2,000 fan-out messages/s it raised p99 delivery from ~12 ms to 19–44 ms.
  const client = connect('commands')
  // The health check has a connection of its own: a PING queued behind a
  // burst of big replies on the command connection would look like an outage.
  const probe = connect('health')
  // A closed socket is down at once; being up again is confirmed by a PING.
  client.on('close', () => setState('down', lastError || 'connection closed'))

  let checking = false
  async function check (): Promise<void> {
    if (checking || closed) return
    checking = true
    try {
      const notReady = [client, probe].find((connection) => connection.status !== 'ready')
      if (notReady !== undefined) return setState('down', lastError || notReady.status)
      await probe.ping()
      // Coming back, the command connection must answer too: the probe alone
      // once said "ok" while the command connection was still recovering
      // (seen after a freeze). Only then: in normal operation a PING queued
      // behind big replies on it could look like an outage.
      if (state === 'down') await client.ping()
      setState('ok')
    } catch (error) {
      // The PING was sent and not answered in time: Redis is frozen.
      setState('down', errorText(error))
      // A frozen Redis keeps the socket open: commands written to it would
      // each wait for their timeout. Cutting it makes them fail at once and
      // frees what they hold; ioredis reconnects by itself.
      if (client.status === 'ready') client.disconnect(true)
    } finally {
      checking = false
    }
  }
  for (const connection of [client, probe]) connection.on('ready', () => { check().catch(() => undefined) })
  const timer = setInterval(() => { check().catch(() => undefined) }, healthIntervalMs).unref()

  return {
    client,
    get state () { return state },

    async whenReady (timeoutMs) {
      if (state === 'ok') return state
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timeout)
          waiters.delete(wake)
          resolve()
        }
        const timeout = setTimeout(wake, timeoutMs).unref()
        waiters.add(wake)
      })
      return state
    },

    connect,

    async close () {
      closed = true
      clearInterval(timer)
      for (const wake of waiters) wake()
      await Promise.all([...connections].map(async (connection) => {
        // QUIT lets Redis finish what was sent; a dead connection is just dropped.
        if (connection.status === 'ready') await connection.quit().catch(() => connection.disconnect())
        else connection.disconnect()
      }))
      connections.clear()
    }
  }
}
