import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/*
 * Lua scripts run atomically in Redis: what must not interleave with another
 * instance's write (join-unless-full, append-and-trim, TTL renewal of every
 * key of a session) is one script. ioredis sends each by its SHA (EVALSHA)
 * and falls back to the source once when Redis does not know it (a restarted
 * Redis), so scripts cost one round trip and no re-upload; an `ordered`
 * script is loaded ahead instead (see LuaScript).
 */

export interface LuaScript {
  /** How many of the arguments are keys (KEYS[1..n]), the rest being ARGV; `any`: as many as each call passes. */
  keys: number | 'any'
  lua: string
  /**
   * Calls run in the order they are made, or fail: one connection's
   * messages, several batches of them in flight, must get their seqs in
   * that order. ioredis resends an EVALSHA that got NOSCRIPT (Redis forgot
   * the script: SCRIPT FLUSH, a server swapped behind a proxy) only when
   * that error comes back, by which time a later call may have run. So an
   * ordered script is loaded (SCRIPT LOAD) whenever the connection becomes
   * ready, called by SHA, and a call that gets NOSCRIPT fails (the caller
   * says STORE_UNAVAILABLE) and loads it again. Sending it whole (EVAL)
   * every time, 3.5 KB per call, measured slower.
   */
  ordered?: true
}

export type ScriptArg = string | number

export type ScriptRunner = (keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>

/**
 * The commands sent in one turn of the event loop leave in one socket write
 * (a writev), not a write system call each: under fan-out load those calls
 * were a third of the sending instance's time. Hand-written rather than
 * ioredis' enableAutoPipelining, which was measured here to worsen the p99
 * of the fan-out from ~12 to 19–44 ms: it settles a batch's commands
 * together when the last reply arrives, where here each reply settles its
 * own command as soon as it is read.
 */
function writeTogether (redis: Redis): void {
  const stream = redis.stream as Redis['stream'] | undefined
  if (stream === undefined || stream.writableCorked > 0) return
  stream.cork()
  process.nextTick(() => stream.uncork())
}

/** Calls an `ordered` script: by SHA, never resent (see LuaScript). */
function orderedCall (redis: Redis, lua: string): ScriptRunner {
  const sha = createHash('sha1').update(lua).digest('hex')
  // Sent first on a connection that has just become ready: before any call.
  const load = (): void => { redis.script('LOAD', lua).catch(() => undefined) }
  redis.on('ready', load)
  if (redis.status === 'ready') load()
  return async (keys, args) => {
    try {
      return await redis.evalsha(sha, keys.length, ...keys, ...args)
    } catch (error) {
      if ((error as Error).message.startsWith('NOSCRIPT')) load()
      throw error
    }
  }
}

/** Calls a script defined as an ioredis command, which resends it itself when Redis forgot it. */
function commandCall (redis: Redis, command: string, { keys: count, lua }: LuaScript): ScriptRunner {
  redis.defineCommand(command, count === 'any' ? { lua } : { numberOfKeys: count, lua })
  const commands = redis as unknown as Record<string, (...args: ScriptArg[]) => Promise<unknown>>
  // Without numberOfKeys, ioredis takes the count as the first argument.
  return (keys, args) => count === 'any' ? commands[command](keys.length, ...keys, ...args) : commands[command](...keys, ...args)
}

/** Defines `scripts` on `redis` as commands and returns a runner per script. */
export function defineScripts<T extends Record<string, LuaScript>> (redis: Redis, namespace: string, scripts: T): { [K in keyof T]: ScriptRunner } {
  const runners = {} as { [K in keyof T]: ScriptRunner }
  for (const [name, script] of Object.entries(scripts) as Array<[keyof T & string, LuaScript]>) {
    const command = `${namespace}_${name}`
    const call = script.ordered === true ? orderedCall(redis, script.lua) : commandCall(redis, command, script)
    runners[name] = (keys, args) => {
      if (script.keys !== 'any' && keys.length !== script.keys) throw new Error(`${command} takes ${script.keys} keys, got ${keys.length}`)
      writeTogether(redis)
      return call(keys, args)
    }
  }
  return runners
}
